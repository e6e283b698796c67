"""Small real-image datasets for the demo, the tests and the benchmarks; nothing is downloaded.

digits: scikit-learn's 1,797 real 8x8 handwritten-digit scans (10 classes), scaled up and written as
JPEG and PNG records with 1-based labels, split into train/validation shards.

    python -m data.sample_data --output_dir=sample_data/digits

digit_detection: those scans pasted at random places, sizes and colours onto crops of scikit-image's real
texture photos (grass, gravel, brick) and photos (coffee, cat, rocket, astronaut); each box is the exact
extent of the pasted ink. Records with normalized boxes and 1-based labels, as the detector reads them.

    python -m data.sample_data --dataset=digit_detection --output_dir=sample_data/digit_detection
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
                 num_shards: int = 2, num_classes: int = 10) -> dict:
    """Writes train-* and validation-* shards plus labels.txt (the digits 0..num_classes-1); returns paths and
    sizes."""
    images, labels = digit_images(image_size)
    images, labels = images[labels < num_classes], labels[labels < num_classes]
    order = np.random.default_rng(seed).permutation(len(labels))
    num_validation = int(len(labels) * validation_fraction)
    validation, train = order[:num_validation], order[num_validation:]
    os.makedirs(output_dir, exist_ok=True)
    write_classification_shards(os.path.join(output_dir, "train"), images[train], labels[train], num_shards)
    write_classification_shards(os.path.join(output_dir, "validation"), images[validation], labels[validation], 1)
    with open(os.path.join(output_dir, "labels.txt"), "w") as handle:
        handle.write("\n".join(DIGIT_LABELS[:num_classes]) + "\n")
    return {"train": os.path.join(output_dir, "train-*"), "validation": os.path.join(output_dir, "validation-*"),
            "num_train": len(train), "num_validation": len(validation), "num_classes": num_classes}


def _backgrounds() -> list[np.ndarray]:
    import skimage.data

    photos = []
    for name in ("grass", "gravel", "brick", "coffee", "chelsea", "rocket", "astronaut"):
        image = getattr(skimage.data, name)()
        photos.append(np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3])
    return photos


def detection_scene(rng, backgrounds, scans, scan_labels, image_size: int, max_objects: int,
                    object_size=(0.2, 0.45)):
    """One image: a random background crop with 0..max_objects digits pasted without overlap.
    Returns (uint8 image, normalized [ymin, xmin, ymax, xmax] boxes, 0-based labels)."""
    background = backgrounds[rng.integers(len(backgrounds))]
    short_side = min(background.shape[:2])
    crop = int(rng.integers(min(image_size, short_side), short_side + 1))  # upscaled when the image is larger
    top = int(rng.integers(background.shape[0] - crop + 1))
    left = int(rng.integers(background.shape[1] - crop + 1))
    canvas = np.asarray(Image.fromarray(background[top:top + crop, left:left + crop]).resize(
        (image_size, image_size), Image.BILINEAR), np.float32)
    boxes, labels, taken = [], [], np.zeros((image_size, image_size), bool)
    count = 0 if rng.uniform() < 0.1 else int(rng.integers(1, max_objects + 1))  # one image in ten is a negative
    for _ in range(count):
        index = int(rng.integers(len(scans)))
        side = int(image_size * rng.uniform(*object_size))
        ink = np.asarray(Image.fromarray(scans[index]).resize((side, side), Image.BILINEAR), np.float32) / 255.0
        ys, xs = np.nonzero(ink > 0.25)
        if len(ys) == 0:
            continue
        y0, x0 = int(rng.integers(image_size - side + 1)), int(rng.integers(image_size - side + 1))
        ymin, ymax, xmin, xmax = y0 + ys.min(), y0 + ys.max() + 1, x0 + xs.min(), x0 + xs.max() + 1
        if taken[ymin:ymax, xmin:xmax].any():
            continue  # keep objects apart: every box is then unambiguous
        taken[ymin:ymax, xmin:xmax] = True
        colour = rng.uniform(0, 255, 3) if rng.uniform() < 0.5 else np.full(3, rng.choice([10.0, 245.0]))
        alpha = np.clip((ink - 0.25) / 0.5, 0, 1)[..., None]
        region = canvas[y0:y0 + side, x0:x0 + side]
        canvas[y0:y0 + side, x0:x0 + side] = region * (1 - alpha) + colour * alpha
        boxes.append([ymin / image_size, xmin / image_size, ymax / image_size, xmax / image_size])
        labels.append(int(scan_labels[index]))
    return np.clip(canvas, 0, 255).astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4), labels


def write_detection_shards(path_prefix: str, scenes, num_shards: int, names,
                           image_formats=("JPEG", "PNG")) -> list[str]:
    """`<prefix>-SSSSS-of-NNNNN` TFRecords of (image, boxes, 0-based labels) scenes, encoded in `image_formats`
    in turn (by default JPEG and PNG alternate, so both decoders are exercised)."""
    import tensorflow as tf

    from data.example_codec import detection_example

    paths = [f"{path_prefix}-{s:05d}-of-{num_shards:05d}" for s in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    for i, (image, boxes, labels) in enumerate(scenes):
        image_format = image_formats[i % len(image_formats)]
        example = detection_example(encode(image, image_format), boxes, [label + 1 for label in labels],
                                    height=image.shape[0], width=image.shape[1], image_format=image_format,
                                    source_id=str(i + 1), class_names=[names[label] for label in labels])
        writers[i % num_shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return paths


def build_digit_detection(output_dir: str, image_size: int = 128, num_train: int = 600, num_validation: int = 100,
                          num_classes: int = 3, max_objects: int = 3, seed: int = 0, num_shards: int = 2,
                          image_formats=("JPEG", "PNG")) -> dict:
    """Writes train-* and validation-* detection shards plus labels.txt; returns paths and sizes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    chosen = digits.target < num_classes
    scans = np.clip(digits.images[chosen] * (255.0 / 16.0), 0, 255).astype(np.uint8)
    scan_labels = digits.target[chosen]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(scans))
    held_out = order[:len(order) // 5]  # validation digits are scans the training images never show
    train_scans, validation_scans = order[len(order) // 5:], held_out
    backgrounds = _backgrounds()
    names = DIGIT_LABELS[:num_classes]
    os.makedirs(output_dir, exist_ok=True)
    for split, count, pool, shards in (("train", num_train, train_scans, num_shards),
                                       ("validation", num_validation, validation_scans, 1)):
        scenes = [detection_scene(rng, backgrounds, scans[pool], scan_labels[pool], image_size, max_objects)
                  for _ in range(count)]
        write_detection_shards(os.path.join(output_dir, split), scenes, shards, names, image_formats)
    with open(os.path.join(output_dir, "labels.txt"), "w") as handle:
        handle.write("\n".join(names) + "\n")
    return {"train": os.path.join(output_dir, "train-*"), "validation": os.path.join(output_dir, "validation-*"),
            "num_train": num_train, "num_validation": num_validation, "num_classes": num_classes}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("digits", "digit_detection"), default="digits")
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--image_size", type=int, default=None)
    args = parser.parse_args()
    if args.dataset == "digit_detection":
        info = build_digit_detection(args.output_dir or "sample_data/digit_detection", args.image_size or 128)
    else:
        info = build_digits(args.output_dir or "sample_data/digits", args.image_size or 32)
    print(f"wrote {info['num_train']} training and {info['num_validation']} validation images "
          f"({info['num_classes']} classes): {info['train']} {info['validation']}")


if __name__ == "__main__":
    main()
