"""The detection peer of bench/accuracy_bench.py: Ultralytics YOLO from scratch, as its users run it.

Runs in its own virtual environment (torch and ultralytics are not the product's dependencies, and TensorFlow is
not needed here); accuracy_bench.py writes the set in YOLO's layout, calls this with that environment's Python,
and scores the detections written here with the same COCO evaluator as the product. Nothing is downloaded:
the model is built from the `yolo11n.yaml` that ships in the package, AMP's check (which fetches weights) is off
on CPU anyway, and plots (which fetch a font) are off.

    YOLO_OFFLINE=1 python bench/yolo_peer.py --data=DIR/data.yaml --test_images=DIR/test --epochs=3 --batch=8 \
        --imgsz=128 --seed=1 --output=detections.json
"""

import argparse
import json
import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="YOLO data.yaml")
    parser.add_argument("--test_images", required=True, help="folder of the test split's images")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", default="yolo11n.yaml")
    parser.add_argument("--min_score", type=float, default=0.05, help="the product's --nms_score_threshold")
    parser.add_argument("--project", required=True, help="where Ultralytics writes its run")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    from ultralytics import YOLO

    model = YOLO(args.model)
    # nbs = batch: the optimizer steps once per batch (Ultralytics otherwise accumulates up to 64 images per step),
    # so the step count equals the product's. Everything else is Ultralytics' default.
    model.train(data=args.data, epochs=args.epochs, batch=args.batch, nbs=args.batch, imgsz=args.imgsz,
                device="cpu", workers=0, seed=args.seed, plots=False, amp=False, project=args.project, name="run",
                exist_ok=True, verbose=False)
    detections = {}
    names = sorted(os.listdir(args.test_images))
    for start in range(0, len(names), 32):
        chunk = [os.path.join(args.test_images, name) for name in names[start:start + 32]]
        for name, result in zip(names[start:start + 32], model.predict(chunk, imgsz=args.imgsz, conf=args.min_score,
                                                                        max_det=100, device="cpu", verbose=False)):
            height, width = result.orig_shape
            xyxy = result.boxes.xyxy.numpy()
            boxes = [[float(b[1]) / height, float(b[0]) / width, float(b[3]) / height, float(b[2]) / width] for b in xyxy]
            detections[name] = {"boxes": boxes, "scores": result.boxes.conf.numpy().tolist(),
                                "classes": (result.boxes.cls.numpy() + 1).tolist()}
    with open(args.output, "w") as handle:
        json.dump(detections, handle)
    print("detections written", file=sys.stderr)


if __name__ == "__main__":
    main()
