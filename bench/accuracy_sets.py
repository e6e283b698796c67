"""Real-photo classification and detection sets for bench/accuracy_bench.py, assembled from Debian packages
(downloaded once with `apt-get download`, cached; nothing of them is committed: GPL-2+ images stay out of the
repository):

- `dataset-fashion-mnist` (MIT): 70,000 real product photos, 28x28 grayscale, 10 classes, with the authors' own
  test split of 10,000 (the public anchor).
- `tuxpaint-stamps-default` (GPL-2+): photo cut-outs of real things with an alpha mask, in category folders.
- `plasma-workspace-wallpapers` (GPL-2+): the photographs among them (the renders are left out) as backgrounds,
  with scikit-image's bundled photos.

Stamps are split by file into train / validation / test (60/20/20): the test split shows objects that neither
training nor model selection ever saw, on backgrounds cropped anew. Boxes come from the alpha mask, so they are
exact.
"""

import glob
import gzip
import os
import subprocess

import numpy as np
from PIL import Image

PACKAGES = ("dataset-fashion-mnist", "tuxpaint-stamps-default", "plasma-workspace-wallpapers")
# The wallpapers that are photographs (the rest of the package is renders and drawings).
PHOTO_WALLPAPERS = ("BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
                    "OneStandsOut", "Path", "summer_1am")
FASHION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def fetch_packages(cache_dir: str) -> str:
    """Downloads and unpacks the three packages under cache_dir (once); returns the unpacked root."""
    root = os.path.join(cache_dir, "root")
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    debs = os.path.join(cache_dir, "debs")
    os.makedirs(debs, exist_ok=True)
    fetched = subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, capture_output=True, text=True)
    if fetched.returncode:
        raise RuntimeError(f"apt-get download {' '.join(PACKAGES)} failed ({fetched.stderr.strip()[-300:]}); run "
                           f"`apt-get update` first, or unpack the three packages under {root} yourself")
    os.makedirs(root, exist_ok=True)
    for deb in glob.glob(os.path.join(debs, "*.deb")):
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    open(os.path.join(root, ".complete"), "w").close()
    return root


def _idx(path: str) -> np.ndarray:
    with gzip.open(path) as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(root: str) -> dict:
    """{"train": (images, labels), "test": (...)}: uint8 [n, 28, 28], 0-based labels; the authors' split."""
    folder = os.path.join(root, "usr/share/datasets/fashion-mnist")
    return {split: (_idx(f"{folder}/{prefix}-images-idx3-ubyte.gz"), _idx(f"{folder}/{prefix}-labels-idx1-ubyte.gz"))
            for split, prefix in (("train", "train"), ("test", "t10k"))}


def backgrounds(root: str) -> list[np.ndarray]:
    import skimage.data

    photos = []
    for name in PHOTO_WALLPAPERS:
        path = sorted(glob.glob(os.path.join(root, f"usr/share/wallpapers/{name}/contents/images/1280x800.*")))[0]
        photos.append(np.asarray(Image.open(path).convert("RGB")))
    for name in ("coffee", "chelsea", "rocket", "astronaut", "grass", "gravel", "brick"):
        image = getattr(skimage.data, name)()
        photos.append(np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3])
    return photos


def stamps(root: str, category: str) -> list[str]:
    """The photo cut-outs of a tuxpaint category (its drawn `cartoon` and `toys` variants left out)."""
    paths = glob.glob(os.path.join(root, "usr/share/tuxpaint/stamps", category, "**", "*.png"), recursive=True)
    return sorted(p for p in paths if "/cartoon/" not in p and "/toys/" not in p)


def split_by_file(paths: list[str], rng) -> dict:
    order = rng.permutation(len(paths))
    cut1, cut2 = int(len(paths) * 0.6), int(len(paths) * 0.8)
    return {"train": [paths[i] for i in order[:cut1]], "validation": [paths[i] for i in order[cut1:cut2]],
            "test": [paths[i] for i in order[cut2:]]}


def _background_crop(rng, photos, size: int) -> np.ndarray:
    photo = photos[rng.integers(len(photos))]
    short = min(photo.shape[:2])
    crop = int(rng.integers(max(size, short // 3), short + 1))
    top, left = int(rng.integers(photo.shape[0] - crop + 1)), int(rng.integers(photo.shape[1] - crop + 1))
    return np.asarray(Image.fromarray(photo[top:top + crop, left:left + crop]).resize((size, size), Image.BILINEAR),
                      np.float32)


def _stamp(path: str, side: int, rng) -> np.ndarray:
    """RGBA float [h, w, 4] with its longer side `side`, cropped to its alpha, flipped at random."""
    image = Image.open(path).convert("RGBA")
    box = image.getchannel("A").point(lambda a: 255 if a > 127 else 0).getbbox()
    image = image.crop(box) if box else image
    scale = side / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    if rng.uniform() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(image, np.float32)


def _paste(canvas: np.ndarray, stamp: np.ndarray, top: int, left: int) -> tuple | None:
    """Alpha-blends stamp into canvas; returns the box of its opaque pixels (pixels: ymin, xmin, ymax, xmax), or
    None, pasting nothing, for a stamp that has none left once shrunk (a thin outline at a few pixels)."""
    height, width = stamp.shape[:2]
    alpha = stamp[..., 3:] / 255.0
    ys, xs = np.nonzero(alpha[..., 0] > 0.5)
    if not len(ys):
        return None
    region = canvas[top:top + height, left:left + width]
    canvas[top:top + height, left:left + width] = region * (1 - alpha) + stamp[..., :3] * alpha
    return top + ys.min(), left + xs.min(), top + ys.max() + 1, left + xs.max() + 1


def classification_scene(rng, photos, path: str, size: int) -> np.ndarray:
    canvas = _background_crop(rng, photos, size)
    stamp = _stamp(path, int(size * rng.uniform(0.45, 0.9)), rng)
    top = int(rng.integers(size - stamp.shape[0] + 1))
    left = int(rng.integers(size - stamp.shape[1] + 1))
    _paste(canvas, stamp, top, left)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def detection_scene(rng, photos, pool: list, size: int, max_objects: int, object_size: tuple):
    """pool: per 0-based label, its stamp paths (each object's class drawn evenly). Returns (image, normalized
    boxes [n, 4], labels); objects never overlap."""
    canvas = _background_crop(rng, photos, size)
    boxes, labels, taken = [], [], np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(pool)))
        path = pool[label][rng.integers(len(pool[label]))]
        stamp = _stamp(path, int(size * rng.uniform(*object_size)), rng)
        top = int(rng.integers(size - stamp.shape[0] + 1))
        left = int(rng.integers(size - stamp.shape[1] + 1))
        if taken[top:top + stamp.shape[0], left:left + stamp.shape[1]].any():
            continue
        box = _paste(canvas, stamp, top, left)
        if box is None:
            continue
        taken[top:top + stamp.shape[0], left:left + stamp.shape[1]] = True
        ymin, xmin, ymax, xmax = box
        boxes.append([ymin / size, xmin / size, ymax / size, xmax / size])
        labels.append(label)
    return np.clip(canvas, 0, 255).astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4), labels


def _write_labels(directory: str, names) -> None:
    with open(os.path.join(directory, "labels.txt"), "w") as handle:
        handle.write("\n".join(names) + "\n")


def _paths(directory: str, names, counts: dict) -> dict:
    return {"train": os.path.join(directory, "train-*"), "validation": os.path.join(directory, "validation-*"),
            "test": os.path.join(directory, "test-*"), "num_classes": len(names), "names": list(names),
            **{f"num_{split}": count for split, count in counts.items()}}


def build_stamp_classification(root: str, directory: str, categories: tuple, size: int, counts: dict,
                               seed: int = 0) -> dict:
    from data.sample_data import write_classification_shards

    if os.path.exists(os.path.join(directory, "labels.txt")):
        return _paths(directory, categories, counts)
    rng = np.random.default_rng(seed)
    photos = backgrounds(root)
    splits = [split_by_file(stamps(root, category), rng) for category in categories]
    os.makedirs(directory, exist_ok=True)
    for split, count in counts.items():
        labels = rng.integers(len(categories), size=count)
        images = [classification_scene(rng, photos, splits[label][split][rng.integers(len(splits[label][split]))], size)
                  for label in labels]
        write_classification_shards(os.path.join(directory, split), images, labels, 2 if split == "train" else 1,
                                    names=list(categories))
    _write_labels(directory, categories)
    return _paths(directory, categories, counts)


def build_fashion(root: str, directory: str, size: int, counts: dict, seed: int = 0) -> dict:
    """Training and validation images from the authors' training split, test images from their test split."""
    from data.sample_data import write_classification_shards

    if os.path.exists(os.path.join(directory, "labels.txt")):
        return _paths(directory, FASHION_NAMES, counts)
    data = fashion_mnist(root)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data["train"][1]))
    chosen = {"train": (data["train"], order[:counts["train"]]),
              "validation": (data["train"], order[counts["train"]:counts["train"] + counts["validation"]]),
              "test": (data["test"], rng.permutation(len(data["test"][1]))[:counts["test"]])}
    os.makedirs(directory, exist_ok=True)
    for split, ((images, labels), rows) in chosen.items():
        rgb = [np.asarray(Image.fromarray(images[i]).resize((size, size), Image.BILINEAR).convert("RGB")) for i in rows]
        write_classification_shards(os.path.join(directory, split), rgb, labels[rows], 2 if split == "train" else 1,
                                    names=list(FASHION_NAMES))
    _write_labels(directory, FASHION_NAMES)
    return _paths(directory, FASHION_NAMES, counts)


def build_stamp_detection(root: str, directory: str, groups: dict, size: int, counts: dict, max_objects: int,
                          object_size: tuple, seed: int = 0) -> dict:
    """groups: {class name: tuxpaint categories}; every stamp of those categories is an object of that class."""
    from data.sample_data import write_detection_shards

    names = list(groups)
    if os.path.exists(os.path.join(directory, "labels.txt")):
        return _paths(directory, names, counts)
    rng = np.random.default_rng(seed)
    photos = backgrounds(root)
    pools = {"train": [], "validation": [], "test": []}
    for categories in groups.values():
        for split in pools:
            pools[split].append([])
        for category in categories:
            for split, paths in split_by_file(stamps(root, category), rng).items():
                pools[split][-1] += paths
    os.makedirs(directory, exist_ok=True)
    for split, count in counts.items():
        scenes = [detection_scene(rng, photos, pools[split], size, max_objects, object_size) for _ in range(count)]
        write_detection_shards(os.path.join(directory, split), scenes, 2 if split == "train" else 1, names,
                               image_formats=("JPEG",))
    _write_labels(directory, names)
    return _paths(directory, names, counts)
