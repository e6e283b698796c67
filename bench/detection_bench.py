"""Detector training images/s, real TFRecord pipeline vs. synthetic in-memory tensors, at 256 and 384 px; and the
exported SavedModel's serving latency per image on this machine.

Training: the trainer's own compiled function, real and synthetic feeds alternating in rounds in one process
(bench/training_throughput.py); target ratio >= 0.9. The real feed decodes JPEGs 1.25x larger than the model
input, jitters their scale in [0.8, 1.2] (--aug_scale_min/max), crops, flips, pads and assigns anchor targets on
every step. The pipeline alone (no model) is timed too.
Data: scikit-learn digit scans pasted at known boxes onto scikit-image photos (data/sample_data.py), all JPEG.
Latency: `serving_default` of the exported model called with those JPEG bytes (1.25x the model input, fitted
into it by the signature), as a prediction service would (batch 1 and batch 8), median of repeated calls after
a warm-up.

    python bench/detection_bench.py [--sizes=256,384 --resnet_depth=50 --fpn_type=fpn --batch=8 --steps=10 --rounds=3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402
from training_throughput import build_trainer, devices, print_comparison, real_vs_synthetic  # noqa: E402


def serving_latency(serve, encoded: list[bytes], batch: int, calls: int) -> float:
    """Median seconds per image of serving_default over `calls` calls with `batch` images each."""
    images = tf.constant((encoded * batch)[:batch])
    keys = tf.constant([b""] * batch)
    serve(encoded_image=images, key=keys)  # warm-up
    per_call = []
    for _ in range(calls):
        started = time.perf_counter()
        serve(encoded_image=images, key=keys)["num_detections"].numpy()
        per_call.append(time.perf_counter() - started)
    return statistics.median(per_call) / batch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,384")
    parser.add_argument("--resnet_depth", type=int, default=50)
    parser.add_argument("--fpn_type", default="fpn", choices=("fpn", "nasfpn"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--latency_calls", type=int, default=10)
    args = parser.parse_args()

    from core import feature_keys
    from data.sample_data import build_digit_detection
    from export.atomic import export_saved_model

    print(f"detector: ResNet-{args.resnet_depth} {args.fpn_type}, batch {args.batch}, {args.rounds} rounds x "
          f"{args.steps} steps, {devices()}")
    for size in (int(s) for s in args.sizes.split(",")):
        workdir = tempfile.mkdtemp(prefix=f"detection-bench-{size}-")
        data = build_digit_detection(os.path.join(workdir, "data"), image_size=size * 5 // 4,
                                     num_train=args.images, num_validation=8, image_formats=("JPEG",))
        task, trainer, strategy = build_trainer([
            f"--training_data_path={data['train']}", f"--validation_data_path={data['validation']}",
            f"--job_dir={workdir}/job", f"--num_classes={data['num_classes']}", "--max_steps=1000000",
            f"--resnet_depth={args.resnet_depth}", f"--fpn_type={args.fpn_type}", f"--image_size={size},{size}",
            f"--train_batch_size={args.batch}", "--aug_scale_min=0.8", "--aug_scale_max=1.2", "--seed=0"])
        print(f"{size}x{size} px training:")
        print_comparison(real_vs_synthetic(task, trainer, strategy, args.batch, args.steps, args.rounds), target=0.9)

        model_dir = os.path.join(workdir, "model")
        export_saved_model(task.serving_module(trainer.model), model_dir, {})
        serve = tf.saved_model.load(model_dir).signatures["serving_default"]
        validation = tf.io.gfile.glob(data["validation"])
        encoded = [tf.train.Example.FromString(record.numpy()).features.feature[feature_keys.IMAGE].bytes_list.value[0]
                   for record in tf.data.TFRecordDataset(validation).take(8)]
        assert all(image.startswith(b"\xff\xd8") for image in encoded), "serving latency is measured on JPEG bytes"
        for batch in (1, 8):
            seconds = serving_latency(serve, encoded, batch, args.latency_calls)
            print(f"  exported model ({size} px input), serving_default on {size * 5 // 4} px JPEG bytes, batch "
                  f"{batch}: {seconds * 1000:.0f} ms/image")


if __name__ == "__main__":
    main()
