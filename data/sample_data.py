"""Small real-image datasets for the demo, the tests and the benchmarks; nothing is downloaded.

digits: scikit-learn's 1,797 real 8x8 handwritten-digit scans (10 classes), scaled up and written as
JPEG and PNG records with 1-based labels, split into train/validation shards.

    python -m data.sample_data --output_dir=sample_data/digits
"""

import argparse
import io
import os

import numpy as np
from PIL import Image

DIGIT_LABELS = [str(d) for d in range(10)]


def digit_images(image_size: int = 32):
    """(uint8 RGB images [n, s, s, 3], 0-based labels [n]) from scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    scans = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)  # 0..16 ink levels -> 0..255
    images = np.stack([
        np.asarray(Image.fromarray(255 - scan).resize((image_size, image_size), Image.BILINEAR).convert("RGB"))
        for scan in scans])
    return images, digits.target.astype(np.int64)


def encode(image: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def write_classification_shards(path_prefix: str, images, labels, num_shards: int, names=None) -> list[str]:
    """Writes `<prefix>-SSSSS-of-NNNNN` TFRecords; image i is JPEG when i is even, PNG when odd."""
    import tensorflow as tf

    from data.example_codec import classification_example

    paths = [f"{path_prefix}-{s:05d}-of-{num_shards:05d}" for s in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    for i, (image, label) in enumerate(zip(images, labels)):
        image_format = "JPEG" if i % 2 == 0 else "PNG"
        example = classification_example(
            encode(image, image_format), int(label) + 1, height=image.shape[0], width=image.shape[1],
            image_format=image_format, filename=f"{i:05d}.{image_format.lower()}",
            synset=(names or DIGIT_LABELS)[int(label)])
        writers[i % num_shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return paths


def build_digits(output_dir: str, image_size: int = 32, validation_fraction: float = 0.2, seed: int = 0,
                 num_shards: int = 2) -> dict:
    """Writes train-* and validation-* shards plus labels.txt; returns paths and sizes."""
    images, labels = digit_images(image_size)
    order = np.random.default_rng(seed).permutation(len(labels))
    num_validation = int(len(labels) * validation_fraction)
    validation, train = order[:num_validation], order[num_validation:]
    os.makedirs(output_dir, exist_ok=True)
    write_classification_shards(os.path.join(output_dir, "train"), images[train], labels[train], num_shards)
    write_classification_shards(os.path.join(output_dir, "validation"), images[validation], labels[validation], 1)
    with open(os.path.join(output_dir, "labels.txt"), "w") as handle:
        handle.write("\n".join(DIGIT_LABELS) + "\n")
    return {"train": os.path.join(output_dir, "train-*"), "validation": os.path.join(output_dir, "validation-*"),
            "num_train": len(train), "num_validation": len(validation), "num_classes": 10}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="sample_data/digits")
    parser.add_argument("--image_size", type=int, default=32)
    args = parser.parse_args()
    info = build_digits(args.output_dir, args.image_size)
    print(f"wrote {info['num_train']} training and {info['num_validation']} validation images "
          f"({info['num_classes']} classes): {info['train']} {info['validation']}")


if __name__ == "__main__":
    main()
