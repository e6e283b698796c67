"""Training images/s with the real TFRecord pipeline vs. the same model fed synthetic in-memory tensors.

Both run in one process, alternating in rounds, through the trainer's own compiled training function
(bench/training_throughput.py); the report is the ratio of medians. Target: >= 0.95.

Data: real photos bundled with scikit-image, cut into 160x160 JPEG crops (larger than the training size, so
every step decodes, crops and resizes as in real use).

    python bench/input_pipeline_bench.py [--model_type=resnet-18 --image_size=128 --batch=32 --steps=15 --rounds=3]
"""

import argparse
import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from training_throughput import build_trainer, devices, print_comparison, real_vs_synthetic  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "brick", "grass", "gravel", "cat", "hubble_deep_field")


def build_photo_records(output_dir: str, count: int, crop: int = 160, seed: int = 0) -> str:
    from skimage import data as skimage_data

    from data.example_codec import classification_example

    rng = np.random.default_rng(seed)
    photos = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage_data, name)())
        photos.append(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])
    path = os.path.join(output_dir, "photos-00000-of-00001")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(count):
            label = i % len(photos)
            photo = photos[label]
            y = rng.integers(0, photo.shape[0] - crop + 1)
            x = rng.integers(0, photo.shape[1] - crop + 1)
            buffer = io.BytesIO()
            Image.fromarray(photo[y:y + crop, x:x + crop]).save(buffer, format="JPEG", quality=90)
            writer.write(classification_example(buffer.getvalue(), label + 1, height=crop, width=crop,
                                                image_format="JPEG").SerializeToString())
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_type", default="resnet-18")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15, help="steps per timed call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="pipeline-bench-")
    records = build_photo_records(workdir, args.images)
    task, trainer, strategy = build_trainer([
        f"--training_data_path={records}", f"--validation_data_path={records}", f"--job_dir={workdir}/job",
        "--num_classes=10", "--max_steps=1000000", f"--model_type={args.model_type}",
        f"--image_size={args.image_size}", f"--train_batch_size={args.batch}", "--seed=0"])
    result = real_vs_synthetic(task, trainer, strategy, args.batch, args.steps, args.rounds)
    print(f"config: {args.model_type} {args.image_size}px batch {args.batch}, {args.rounds} rounds x "
          f"{args.steps} steps, {devices()}")
    print_comparison(result, target=0.95)


if __name__ == "__main__":
    main()
