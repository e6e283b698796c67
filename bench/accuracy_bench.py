"""Accuracy with the defaults: held-out top-1 / AP of the product with its defaults, the product with the
previous defaults and with one lever at a time (ablation), and a plain Keras / KerasHub script as a user would
write it, at equal steps, batch, model and image size, in one run, on real photos (bench/accuracy_sets.py).

Product runs go through entrypoint.py as users run them, the baselines through this file in a fresh process
(`--baseline`), so both sides get the same resources. The test split is scored outside the jobs, from the
exported SavedModel's `serving_default` (product) or the trained Keras model (baseline), by the same code:
top-1 over the test records, or COCO AP by pycocotools (algorithms/detection/coco_metrics.py, up to 100
detections an image) for both. Model selection (the product's best evaluation) only sees the validation split.

    python bench/accuracy_bench.py [--sets=stamps,fashion,stamps-det,small-det --seeds=1,2
                                    --classification_steps=300 --detection_steps=150 --cache_dir=...
                                    --peer_python=VENV/bin/python]

The detection peer, Ultralytics YOLO11n from scratch (bench/yolo_peer.py), runs in a venv of its own, made once:
`python3.11 -m venv VENV && VENV/bin/pip install torch torchvision ultralytics` (the PyPI wheels, ~6 GB; it trains
on the CPU) and named by --peer_python or ACCURACY_BENCH_PEER_PYTHON; without it the peer's rows are left out.

Tiny settings (tests/test_bench_smoke.py): --classification_steps=4 --detection_steps=2 --images_scale=0.02.
"""

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# name: (kind, builder arguments). Image counts are scaled by --images_scale; detection images are
# --detection_image_size square.
SETS = {
    "stamps": ("classification", {"categories": ("animals", "food", "plants", "household", "town"), "size": 64,
                                  "counts": {"train": 2000, "validation": 300, "test": 1000}}),
    "fashion": ("classification", {"size": 32, "counts": {"train": 10000, "validation": 500, "test": 5000}}),
    "stamps-det": ("detection", {"groups": {"animal": ("animals",), "food": ("food",), "plant": ("plants",)}, "counts": {"train": 800, "validation": 100, "test": 300},
                                 "max_objects": 3, "object_size": (0.25, 0.55)}),
    "small-det": ("detection", {"groups": {"object": ("household", "town", "vehicles", "clothes", "sports")}, "counts": {"train": 800, "validation": 100, "test": 300},
                                "max_objects": 6, "object_size": (0.1, 0.25)}),
}
# The product's variants: its defaults, the defaults before issue 24, and each lever alone. Detection's
# "previous defaults" also fix the anchors at the size they always had.
VARIANTS = {
    "defaults": [],
    "previous defaults": ["--optimizer_type=momentum", "--moving_average_decay=0"],
    "auto optimizer only": ["--moving_average_decay=0"],
    "weight average only": ["--optimizer_type=momentum"],
    "crops of 35%+ of the area": ["--crop_min_area=0.35"],
    "whole image (crop 100%)": ["--crop_min_area=1"],
    "no label smoothing": ["--label_smoothing=0"],
    "anchors fixed at size 4": ["--anchor_size=4"],
    "anchors fixed at size 2": ["--anchor_size=2"],
    "scale jitter 0.8-1.25": ["--aug_scale_min=0.8", "--aug_scale_max=1.25"],
    "large scale jitter 0.5-2": ["--aug_scale_min=0.5", "--aug_scale_max=2.0"],
    "AutoAugment v0": ["--auto_augmentation=true"],
}
DETECTION_PREVIOUS_DEFAULTS = ["--anchor_size=4"]
CLASSIFICATION_ONLY_VARIANTS = {"crops of 35%+ of the area", "whole image (crop 100%)", "no label smoothing"}
DETECTION_ONLY_VARIANTS = {"anchors fixed at size 4", "anchors fixed at size 2", "scale jitter 0.8-1.25",
                           "large scale jitter 0.5-2", "AutoAugment v0"}
BASELINE_NAMES = {"classification": "plain Keras (Adam 1e-3, fit)", "detection": "plain KerasHub RetinaNet (Adam 1e-3)"}
CLASSIFICATION_BATCH, DETECTION_BATCH = 32, 8


def variant_flags(variant: str, kind: str) -> list:
    extra = DETECTION_PREVIOUS_DEFAULTS if kind == "detection" and variant == "previous defaults" else []
    return [*VARIANTS[variant], *extra]


def build_set(name: str, cache_dir: str, images_scale: float, detection_size: int) -> dict:
    import accuracy_sets

    kind, arguments = SETS[name]
    arguments = dict(arguments)
    arguments["counts"] = {split: max(8, int(count * images_scale)) for split, count in arguments["counts"].items()}
    if kind == "detection":
        arguments["size"] = detection_size
    root = accuracy_sets.fetch_packages(cache_dir)
    directory = os.path.join(cache_dir, "sets", f"{name}-{arguments['size']}px-x{images_scale:g}")
    if name == "fashion":
        data = accuracy_sets.build_fashion(root, directory, arguments["size"], arguments["counts"])
    elif kind == "classification":
        data = accuracy_sets.build_stamp_classification(root, directory, arguments["categories"], arguments["size"],
                                                        arguments["counts"])
    else:
        data = accuracy_sets.build_stamp_detection(root, directory, arguments["groups"], arguments["size"],
                                                   arguments["counts"], arguments["max_objects"], arguments["object_size"])
    return {**data, "kind": kind, "size": arguments["size"], "name": name}


# --- scoring the test split, the same way for both sides --------------------------------------------------
def _records(pattern: str):
    import tensorflow as tf

    for path in sorted(glob.glob(pattern)):
        for record in tf.data.TFRecordDataset(path):
            yield tf.train.Example.FromString(record.numpy()).features.feature


def classification_test_set(pattern: str) -> tuple[list, list]:
    encoded, labels = [], []
    for feature in _records(pattern):
        encoded.append(feature["image/encoded"].bytes_list.value[0])
        labels.append(feature["image/class/label"].int64_list.value[0] - 1)
    return encoded, labels


def detection_test_set(pattern: str) -> list:
    scenes = []
    for feature in _records(pattern):
        boxes = [feature[f"image/object/bbox/{k}"].float_list.value for k in ("ymin", "xmin", "ymax", "xmax")]
        scenes.append({"encoded": feature["image/encoded"].bytes_list.value[0],
                       "boxes": [list(b) for b in zip(*boxes)],
                       "labels": list(feature["image/object/class/label"].int64_list.value)})
    return scenes


def coco_ap(scenes: list, detections: list, num_classes: int) -> float:
    """detections[i]: (normalized boxes, scores, 1-based classes) of scenes[i]."""
    from algorithms.detection.coco_metrics import CocoEvaluator

    evaluator = CocoEvaluator(num_classes)
    for scene, (boxes, scores, classes) in zip(scenes, detections):
        evaluator.add_image(1.0, 1.0, scene["boxes"], scene["labels"], boxes=boxes, scores=scores, classes=classes)
    # height = width = 1: COCO's area ranges are then meaningless, AP over all areas is what is read.
    return evaluator.result()["AP"]


def score_saved_model(model_dir: str, data: dict) -> float:
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    if data["kind"] == "classification":
        encoded, labels = classification_test_set(data["test"])
        predicted = []
        for start in range(0, len(encoded), 256):
            chunk = encoded[start:start + 256]
            predicted += serve(image_bytes=tf.constant(chunk), key=tf.constant([b""] * len(chunk)))["classes"].numpy().tolist()
        return float(np.mean(np.asarray(predicted) == np.asarray(labels)))
    scenes, detections = detection_test_set(data["test"]), []
    for start in range(0, len(scenes), 32):
        chunk = scenes[start:start + 32]
        out = serve(encoded_image=tf.constant([s["encoded"] for s in chunk]), key=tf.constant([b""] * len(chunk)))
        for i in range(len(chunk)):
            count = int(out["num_detections"][i])
            detections.append((out["detection_boxes"][i][:count].numpy(), out["detection_scores"][i][:count].numpy(),
                               out["detection_classes"][i][:count].numpy()))
    return coco_ap(scenes, detections, data["num_classes"])


# --- the product ------------------------------------------------------------------------------------------
def product_flags(data: dict, steps: int, seed: int) -> list:
    common = [f"--training_data_path={data['train']}", f"--validation_data_path={data['validation']}",
              f"--max_steps={steps}", f"--train_steps_per_eval={max(1, steps // 3)}", f"--log_every_steps={max(1, steps // 10)}",
              f"--seed={seed}", "--deterministic_ops=false"]
    if data["kind"] == "classification":
        return [*common, f"--num_classes={data['num_classes']}", "--model_type=resnet-18",
                f"--image_size={data['size']}", f"--train_batch_size={CLASSIFICATION_BATCH}"]
    return [*common, f"--num_classes={data['num_classes']}", "--resnet_depth=18",
            f"--image_size={data['size']},{data['size']}", f"--train_batch_size={DETECTION_BATCH}"]


def images_per_second(log: str) -> float | None:
    """Median of the job's logged training rates, the first interval (tracing) left out."""
    rates = [float(r) for r in re.findall(r"step \d+/\d+ loss=\S+ lr=\S+ ([\d.]+) images/s", log)][1:]
    return statistics.median(rates) if rates else None


def run_product(data: dict, steps: int, seed: int, extra: list, scratch: str) -> dict:
    job_dir = tempfile.mkdtemp(dir=scratch)
    started = time.time()
    result = subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), *product_flags(data, steps, seed),
                             f"--job-dir={job_dir}", *extra], capture_output=True, text=True, cwd=REPO)
    seconds = time.time() - started
    if result.returncode:
        raise RuntimeError(f"product job failed ({' '.join(extra)}):\n{result.stderr[-3000:]}")
    chosen = re.search(r"optimizer: (.*)", result.stderr)
    return {"score": score_saved_model(os.path.join(job_dir, "model"), data), "seconds": seconds,
            "images_per_second": images_per_second(result.stderr), "optimizer": chosen.group(1) if chosen else ""}


# --- the baselines, as a user would write them ----------------------------------------------------------------
def _resnet18(size: int):
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[2, 2, 2, 2], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        image_shape=(size, size, 3))


def keras_classifier(data: dict, steps: int, seed: int) -> float:
    """A ResNet-18 from KerasHub with a softmax head, Adam at Keras' default rate, `fit` for `steps` steps."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    size = data["size"]
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

    def decode(record):
        example = tf.io.parse_single_example(record, features)
        image = tf.io.decode_image(example["image/encoded"], channels=3, expand_animations=False)
        return tf.image.resize(image, (size, size)), example["image/class/label"] - 1

    train = (tf.data.TFRecordDataset(glob.glob(data["train"])).map(decode).shuffle(4096, seed=seed).repeat()
             .map(lambda image, label: (tf.image.random_flip_left_right(image), label)).batch(CLASSIFICATION_BATCH)
             .prefetch(tf.data.AUTOTUNE))
    inputs = keras.Input((size, size, 3))
    x = _resnet18(size)(keras.layers.Rescaling(1 / 255.0)(inputs))
    outputs = keras.layers.Dense(data["num_classes"])(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
    test = tf.data.TFRecordDataset(glob.glob(data["test"])).map(decode).batch(256)
    return float(model.evaluate(test, verbose=0)[1])


def keras_hub_detector(data: dict, steps: int, seed: int) -> float:
    """KerasHub's RetinaNet on the same ResNet-18 with an FPN P3-P7, its prior bias put on the class head (its
    constructor puts it on the box head: ../shared/reference/ml_stack_notes.md 3c), Adam 1e-3, `fit`."""
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    size, num_classes = data["size"], data["num_classes"]
    max_objects = max(SETS[data["name"]][1]["max_objects"], 1)
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/object/class/label": tf.io.VarLenFeature(tf.int64),
                **{f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32) for k in ("ymin", "xmin", "ymax", "xmax")}}

    def decode(record):
        example = tf.io.parse_single_example(record, features)
        image = tf.image.resize(tf.io.decode_image(example["image/encoded"], channels=3, expand_animations=False),
                                (size, size)) / 255.0
        boxes = tf.stack([tf.sparse.to_dense(example[f"image/object/bbox/{k}"]) for k in ("ymin", "xmin", "ymax", "xmax")],
                         axis=-1) * size
        labels = tf.cast(tf.sparse.to_dense(example["image/object/class/label"]) - 1, tf.float32)
        count = tf.shape(labels)[0]
        boxes = tf.pad(boxes, [[0, max_objects - count], [0, 0]], constant_values=-1.0)
        labels = tf.pad(labels, [[0, max_objects - count]], constant_values=-1.0)
        return image, {"boxes": tf.reshape(boxes, (max_objects, 4)), "labels": tf.reshape(labels, (max_objects,))}

    train = (tf.data.TFRecordDataset(glob.glob(data["train"])).map(decode).shuffle(1024, seed=seed).repeat()
             .batch(DETECTION_BATCH).prefetch(tf.data.AUTOTUNE))
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=_resnet18(size), min_level=3, max_level=7,
                                                  use_p5=False, image_shape=(size, size, 3))
    detector = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=num_classes,
                                                        bounding_box_format="yxyx", preprocessor=None)
    prior = -np.log((1 - 0.01) / 0.01)
    head_bias = detector.classification_head.prediction_layer.bias
    head_bias.assign(np.full(head_bias.shape, prior, np.float32))
    box_bias = detector.box_head.prediction_layer.bias
    box_bias.assign(np.zeros(box_bias.shape, np.float32))
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    detector.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
    detector.prediction_decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="yxyx", from_logits=True, iou_threshold=0.5, confidence_threshold=0.05, max_detections=100)
    scenes, detections = detection_test_set(data["test"]), []
    for start in range(0, len(scenes), 32):
        chunk = scenes[start:start + 32]
        images = np.stack([tf.image.resize(tf.io.decode_image(s["encoded"], channels=3, expand_animations=False),
                                           (size, size)).numpy() / 255.0 for s in chunk])
        # Eagerly, batch by batch: KerasHub's NMS needs a known batch size, which `predict`'s graph does not have.
        images = tf.constant(images, tf.float32)
        out = {k: v.numpy() for k, v in detector.decode_predictions(detector(images, training=False), images).items()}
        for i in range(len(chunk)):
            count = int(out["num_detections"][i])
            boxes = np.clip(out["boxes"][i][:count] / size, 0.0, 1.0)
            detections.append((boxes, out["confidence"][i][:count], out["labels"][i][:count] + 1))
    return coco_ap(scenes, detections, num_classes)


def run_baseline(data: dict, steps: int, seed: int) -> dict:
    started = time.time()
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--baseline", json.dumps(data),
                             f"--steps={steps}", f"--seed={seed}"], capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        raise RuntimeError(f"baseline failed:\n{result.stderr[-3000:]}")
    score = json.loads(result.stdout.strip().splitlines()[-1])["score"]
    return {"score": score, "seconds": time.time() - started, "images_per_second": None, "optimizer": ""}


# --- the detection peer: Ultralytics YOLO from scratch, in its own environment (bench/yolo_peer.py) ---------
PEER_NAME = "Ultralytics YOLO11n from scratch"


def _write_yolo_split(pattern: str, images: str, labels: str | None) -> int:
    os.makedirs(images, exist_ok=True)
    if labels:
        os.makedirs(labels, exist_ok=True)
    scenes = detection_test_set(pattern)
    for index, scene in enumerate(scenes):
        suffix = ".png" if scene["encoded"].startswith(b"\x89PNG") else ".jpg"
        with open(os.path.join(images, f"{index:06d}{suffix}"), "wb") as handle:
            handle.write(scene["encoded"])
        if labels:  # class, centre x, centre y, width, height, normalized; 0-based classes
            with open(os.path.join(labels, f"{index:06d}.txt"), "w") as handle:
                for (ymin, xmin, ymax, xmax), label in zip(scene["boxes"], scene["labels"]):
                    handle.write(f"{label - 1} {(xmin + xmax) / 2:.6f} {(ymin + ymax) / 2:.6f} "
                                 f"{xmax - xmin:.6f} {ymax - ymin:.6f}\n")
    return len(scenes)


def run_yolo_peer(data: dict, steps: int, seed: int, scratch: str, python: str) -> dict:
    """YOLO's layout written from the same records; whole epochs, the nearest to `steps` steps of DETECTION_BATCH
    (the row says how many ran); its detections scored here like the product's."""
    started = time.time()
    root = tempfile.mkdtemp(prefix="yolo-", dir=scratch)
    count = _write_yolo_split(data["train"], os.path.join(root, "images", "train"), os.path.join(root, "labels", "train"))
    _write_yolo_split(data["validation"], os.path.join(root, "images", "val"), os.path.join(root, "labels", "val"))
    _write_yolo_split(data["test"], os.path.join(root, "images", "test"), None)
    names = data.get("names") or [str(i + 1) for i in range(data["num_classes"])]
    with open(os.path.join(root, "data.yaml"), "w") as handle:
        handle.write(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n")
        handle.writelines(f"  {i}: {json.dumps(name)}\n" for i, name in enumerate(names))
    steps_per_epoch = -(-count // DETECTION_BATCH)
    epochs = max(1, round(steps / steps_per_epoch))
    output = os.path.join(root, "detections.json")
    result = subprocess.run(
        [python, os.path.join(REPO, "bench", "yolo_peer.py"), f"--data={root}/data.yaml",
         f"--test_images={root}/images/test", f"--epochs={epochs}", f"--batch={DETECTION_BATCH}",
         f"--imgsz={data['size']}", f"--seed={seed}", f"--project={root}/runs", f"--output={output}"],
        capture_output=True, text=True, cwd=root,
        env={**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": os.path.join(root, "config")})
    if result.returncode:
        raise RuntimeError(f"YOLO peer failed:\n{result.stderr[-3000:]}")
    with open(output) as handle:
        found = json.load(handle)
    scenes = detection_test_set(data["test"])
    names_on_disk = sorted(os.listdir(os.path.join(root, "images", "test")))
    detections = [(found[name]["boxes"], found[name]["scores"], found[name]["classes"]) for name in names_on_disk]
    return {"score": coco_ap(scenes, detections, data["num_classes"]), "seconds": time.time() - started,
            "images_per_second": None, "optimizer": "", "steps": epochs * steps_per_epoch}


# --- the table --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--classification_steps", type=int, default=300)
    parser.add_argument("--detection_steps", type=int, default=150)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="product variants to run, by name")
    parser.add_argument("--ablation_seeds", default="1", help="seeds for the single-lever variants")
    parser.add_argument("--images_scale", type=float, default=1.0, help="scales every split's image count")
    parser.add_argument("--detection_image_size", type=int, default=256)
    parser.add_argument("--skip_baselines", action="store_true", help="product variants only (a lever measured later)")
    parser.add_argument("--peer_python", default=os.environ.get("ACCURACY_BENCH_PEER_PYTHON"),
                        help="detection sets: the Python of a venv with torch, torchvision and ultralytics, to train "
                             "YOLO11n from scratch as the peer (off when not given)")
    parser.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/accuracy_bench"))
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        data = json.loads(args.baseline)
        trainer = keras_classifier if data["kind"] == "classification" else keras_hub_detector
        print(json.dumps({"score": trainer(data, args.steps, args.seed)}))
        return

    seeds = [int(s) for s in args.seeds.split(",")]
    ablation_seeds = [int(s) for s in args.ablation_seeds.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="accuracy-bench-") as scratch:
        for name in args.sets.split(","):
            data = build_set(name.strip(), args.cache_dir, args.images_scale, args.detection_image_size)
            steps = args.classification_steps if data["kind"] == "classification" else args.detection_steps
            runs = {}
            for seed in seeds:
                trainers = [] if args.skip_baselines else [
                    (BASELINE_NAMES[data["kind"]], lambda: run_baseline(data, steps, seed))]
                if args.peer_python and data["kind"] == "detection" and not args.skip_baselines:
                    trainers.append((PEER_NAME, lambda: run_yolo_peer(data, steps, seed, scratch, args.peer_python)))
                trainers += [(f"product, {variant}", lambda variant=variant: run_product(
                    data, steps, seed, variant_flags(variant, data["kind"]), scratch)) for variant in variants
                    if (variant in ("defaults", "previous defaults") or seed in ablation_seeds)
                    and variant not in (DETECTION_ONLY_VARIANTS if data["kind"] == "classification"
                                        else CLASSIFICATION_ONLY_VARIANTS)]
                for trainer, run in trainers:
                    result = run()
                    runs.setdefault(trainer, []).append(result)
                    print(f"# {name} seed {seed} {trainer}: {result['score']:.4f} in {result['seconds']:.0f} s",
                          flush=True)
            for trainer, results in runs.items():
                rows.append((name, data["kind"], steps, trainer, results))
    metric = {"classification": "top-1", "detection": "AP"}
    print(f"\nheld-out test split, batch {CLASSIFICATION_BATCH} (classification) / {DETECTION_BATCH} (detection), "
          "ResNet-18 for the product and the Keras / KerasHub scripts, one run on this machine")
    print("| set | steps | trainer | held-out | per seed | wall s (mean) | images/s (train) | optimizer chosen |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, steps, trainer, results in rows:
        scores = [r["score"] for r in results]
        rates = [r["images_per_second"] for r in results if r["images_per_second"]]
        rate = f"{statistics.mean(rates):.1f}" if rates else "-"
        chosen = results[0]["optimizer"].split(" (")[0] or "-"
        print(f"| {name} | {results[0].get('steps', steps)} | {trainer} | {metric[kind]} {statistics.mean(scores):.4f} | "
              f"{' / '.join(f'{s:.4f}' for s in scores)} | {statistics.mean(r['seconds'] for r in results):.0f} | "
              f"{rate} | {chosen} |")
    print("\nFashion-MNIST's test split is the authors' own (t10k); compare its top-1 with the figures they publish "
          "for comparable models and training budgets (the dataset's README benchmark).")


if __name__ == "__main__":
    main()
