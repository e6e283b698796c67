"""Where the converter's images come from: the four input layouts, read into one list of `SourceImage`s.

Reading happens on the launching machine (CSV and JSON files are small next to the images they list); decoding
and writing happen in the Beam pipeline (data/jpeg_to_tf_record.py). Every layout's problems that can be seen
without opening an image (a malformed CSV line, a box with min > max) travel with the item as `problem`, so
the pipeline reports them next to the ones only decoding can find.
"""

import csv
import dataclasses
import hashlib
import io
import json
import posixpath

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "validation")
FOLDER_PROBE_LIMIT = 1000  # entries listed to tell a class-folder tree from anything else


def _filesystems():
    """Beam's filesystems (local, gs://, ...), imported on first use: the trainer imports this module at start-up
    and most jobs (TFRecord globs) never need Beam."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


class SourceError(ValueError):
    """The input as a whole cannot be read (a missing CSV, an empty folder): one line for the user."""


@dataclasses.dataclass(frozen=True)
class SourceObject:
    label: str           # class name; its 1-based id is its line in the labels file + 1
    box: tuple           # (ymin, xmin, ymax, xmax) as given: normalized, or pixels when `pixels`
    is_crowd: int = 0
    area: float | None = None


@dataclasses.dataclass(frozen=True)
class SourceImage:
    path: str
    split: str
    origin: str                     # where the item was listed (file:line), for the rejection report
    label: str | None = None        # classification
    objects: tuple = ()             # detection; empty = a negative image
    detection: bool = False
    pixels: bool = False            # boxes in pixels of the image (normalized after decoding)
    source_id: str = ""
    problem: tuple | None = None    # (reason, detail) known before decoding


def to_json(item: SourceImage) -> str:
    """One line of a shard's staged listing (data/jpeg_to_tf_record.py); from_json reads it back."""
    return json.dumps(dataclasses.asdict(item), separators=(",", ":"))


def from_json(line: str) -> SourceImage:
    fields = json.loads(line)
    objects = tuple(SourceObject(**dict(obj, box=tuple(obj["box"]))) for obj in fields.pop("objects"))
    problem = fields.pop("problem")
    return SourceImage(**fields, objects=objects, problem=tuple(problem) if problem else None)


def read_text(path: str) -> str:
    try:
        with _filesystems().open(path) as handle:
            return handle.read().decode("utf-8-sig")
    except Exception as error:  # Beam raises IOError/BeamIOError/FileNotFoundError depending on the filesystem
        raise SourceError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


def _join(directory: str, name: str) -> str:
    if "://" in name or name.startswith("/"):
        return name
    return _filesystems().join(directory, name) if directory else name


def read_classification_csv(path: str, split: str) -> list[SourceImage]:
    """`image_path,label` per line, no header (jpeg_to_tf_record.py's format); relative paths are relative to
    the CSV's folder. Quoted fields may hold commas."""
    items = []
    base = posixpath.dirname(path)
    for number, row in enumerate(csv.reader(io.StringIO(read_text(path))), start=1):
        if not row or not "".join(row).strip():
            continue
        origin = f"{path}:{number}"
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            items.append(SourceImage(",".join(row), split, origin, problem=(
                "malformed_line", f"expected 'image_path,label', got {len(row)} field(s)")))
            continue
        items.append(SourceImage(_join(base, row[0].strip()), split, origin, label=row[1].strip()))
    return items


def _in_validation(relative_path: str, validation_fraction: float, seed: int) -> bool:
    """Seeded and stable: depends on the file's path only, not on listing order or worker count."""
    digest = hashlib.sha256(f"{seed}:{relative_path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < validation_fraction


def is_class_folder_tree(path: str | None) -> bool:
    """A folder (no glob) whose sub-folders hold .jpg/.jpeg/.png files: SageMaker's class-folder layout."""
    if not path or any(c in path for c in "*?["):
        return False
    try:
        matches = _filesystems().match([f"{path.rstrip('/')}/*/*"], limits=[FOLDER_PROBE_LIMIT])[0].metadata_list
    except Exception:  # noqa: BLE001 - a path Beam cannot list is not a folder tree
        return False
    return any(m.path.lower().endswith(IMAGE_EXTENSIONS) for m in matches)


def read_class_folders(root: str, validation_fraction: float, seed: int) -> list[SourceImage]:
    """One sub-folder per class with .jpg/.jpeg/.png files (SageMaker's layout); a seeded split by path hash."""
    root = root.rstrip("/")
    matches = _filesystems().match([f"{root}/*/*"])[0].metadata_list
    items = []
    for metadata in sorted(matches, key=lambda m: m.path):
        relative = metadata.path[len(root) + 1:]
        class_name, _, file_name = relative.partition("/")
        if "/" in file_name or not file_name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        split = "validation" if _in_validation(relative, validation_fraction, seed) else "train"
        items.append(SourceImage(metadata.path, split, relative, label=class_name))
    if not items:
        raise SourceError(f"{root} has no class sub-folders with {'/'.join(IMAGE_EXTENSIONS)} files; expected "
                          f"{root}/<class name>/<image>")
    return items


def read_coco(annotations_path: str, image_dir: str, split: str) -> tuple[list[SourceImage], dict[int, str]]:
    """A COCO instances JSON: labels are the category ids (1-based, as create_coco_tf_record.py writes them),
    boxes [x, y, width, height] in pixels, iscrowd and area kept. Images without annotations are negatives."""
    try:
        coco = json.loads(read_text(annotations_path))
        categories = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
        images = coco["images"]
    except (ValueError, KeyError, TypeError) as error:
        raise SourceError(f"{annotations_path} is not a COCO annotation file ({error!r}); it needs 'images', "
                          f"'annotations' and 'categories'") from None
    if any(category_id < 1 for category_id in categories):
        raise SourceError(f"{annotations_path}: category ids must be >= 1 (they become the 1-based labels)")
    by_image: dict = {}
    for annotation in coco.get("annotations", []):
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    items = []
    for image in images:
        origin = f"{annotations_path}:image_id={image['id']}"
        objects, problem = [], None
        for annotation in by_image.get(image["id"], []):
            x, y, width, height = (float(v) for v in annotation["bbox"])
            category = int(annotation["category_id"])
            if category not in categories:
                problem = ("unknown_label", f"annotation {annotation.get('id')} has category_id {category}, "
                                            f"not in 'categories'")
                break
            if width <= 0 or height <= 0:
                problem = ("invalid_box", f"annotation {annotation.get('id')} has bbox {annotation['bbox']} "
                                          f"with no area")
                break
            objects.append(SourceObject(categories[category], (y, x, y + height, x + width),
                                        int(annotation.get("iscrowd", 0)), float(annotation.get("area", width * height))))
        items.append(SourceImage(_join(image_dir, image["file_name"]), split, origin, objects=tuple(objects),
                                 detection=True, pixels=True, source_id=str(image["id"]), problem=problem))
    return items, categories


def read_boxes_csv(path: str, split: str, pixels: bool) -> list[SourceImage]:
    """`path,label,xmin,ymin,xmax,ymax` rows, several per image, no header; `path,,,,,` lists a negative image.
    Coordinates normalized to [0, 1] unless `pixels`."""
    base = posixpath.dirname(path)
    grouped: dict[str, dict] = {}
    for number, row in enumerate(csv.reader(io.StringIO(read_text(path))), start=1):
        if not row or not "".join(row).strip():
            continue
        origin = f"{path}:{number}"
        image_path = _join(base, row[0].strip()) if row[0].strip() else ""
        entry = grouped.setdefault(image_path, {"origin": origin, "objects": [], "problem": None})
        if entry["problem"]:
            continue
        if len(row) != 6 or not image_path:
            entry["problem"] = ("malformed_line", f"{origin}: expected 'path,label,xmin,ymin,xmax,ymax', got "
                                                  f"{len(row)} field(s)")
            continue
        if not any(field.strip() for field in row[1:]):
            continue  # the image is listed as a negative
        try:
            xmin, ymin, xmax, ymax = (float(field) for field in row[2:])
        except ValueError:
            entry["problem"] = ("malformed_line", f"{origin}: coordinates {row[2:]} are not numbers")
            continue
        entry["objects"].append(SourceObject(row[1].strip(), (ymin, xmin, ymax, xmax)))
    return [SourceImage(image_path, split, entry["origin"], objects=tuple(entry["objects"]), detection=True,
                        pixels=pixels, problem=entry["problem"]) for image_path, entry in grouped.items()]


def derive_labels(items: list[SourceImage]) -> list[str]:
    """Sorted unique class names of everything listed (the converter writes them as labels.txt)."""
    names = {item.label for item in items if item.label}
    names.update(obj.label for item in items for obj in item.objects)
    return sorted(names)


def coco_labels(categories: dict[int, str]) -> list[str]:
    """Line i names label i+1; ids COCO leaves out (e.g. 12 of the 2017 set) get a placeholder name."""
    return [categories.get(i, f"unused_{i}") for i in range(1, max(categories) + 1)]
