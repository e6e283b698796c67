"""The Beam converters (python -m data.jpeg_to_tf_record) on real photos from scikit-image: every input layout,
the rejection report, multi-process determinism, and the trainers reading and training on the output."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core import feature_keys
from dataloaders import classification_input, detection_input
from dataloaders.record_pipeline import RecordCounters
from tests.conftest import REPO, run_entrypoint

PHOTOS = {"cat": ("chelsea", "cat"), "object": ("coffee", "rocket", "camera")}


def _photo(name: str, size=(96, 128)) -> np.ndarray:
    from skimage import data as skimage_data

    image = np.asarray(getattr(skimage_data, name)())
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def _save(image: np.ndarray, path: str, image_format: str, mode: str | None = None) -> bytes:
    picture = Image.fromarray(image)
    if mode:
        picture = picture.convert(mode)
    picture.save(path, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    with open(path, "rb") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    """Real photos in every form users have: RGB and grayscale JPEG, CMYK JPEG, RGB and RGBA PNG."""
    root = tmp_path_factory.mktemp("photos")
    forms = [("jpg", "JPEG", None), ("png", "PNG", None), ("jpeg", "JPEG", "CMYK"), ("png", "PNG", "RGBA")]
    files = []
    for label, names in PHOTOS.items():
        os.makedirs(root / label)
        for i, name in enumerate(names * 2):
            extension, image_format, mode = forms[(i + len(label)) % len(forms)]
            path = str(root / label / f"{name}_{i}.{extension}")
            original = _save(_photo(name, (80 + 8 * i, 112)), path, image_format, mode)
            files.append({"path": path, "label": label, "bytes": original, "format": image_format,
                          "mode": mode or Image.open(path).mode})
    return {"root": str(root), "files": files}


def convert(*args, cwd=REPO, preexec_fn=None):
    """Runs the converter as the README does; returns the CompletedProcess."""
    result = subprocess.run([sys.executable, "-m", "data.jpeg_to_tf_record", *args], capture_output=True,
                            text=True, cwd=cwd, timeout=600, preexec_fn=preexec_fn)
    return result


def _examples(pattern: str) -> list[tf.train.Example]:
    files = sorted(tf.io.gfile.glob(pattern))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def _records(pattern: str) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))]


def _feature(example, key):
    feature = example.features.feature[key]
    return list(getattr(feature, feature.WhichOneof("kind")).value)


def _rejections(output_dir) -> list[dict]:
    with open(os.path.join(output_dir, "rejected.csv")) as handle:
        return list(csv.DictReader(handle))


def _write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_classification_csv_round_trip_keeps_jpeg_bytes_and_labels(photo_files, tmp_path):
    files = photo_files["files"]
    train, validation = files[:-3], files[-3:]
    # Relative paths are relative to the CSV; absolute ones are kept.
    _write_csv(tmp_path / "train.csv", [[os.path.relpath(f["path"], tmp_path), f["label"]] for f in train])
    _write_csv(tmp_path / "eval.csv", [[f["path"], f["label"]] for f in validation])
    (tmp_path / "labels.txt").write_text("object\ncat\n")  # not sorted: the file's order decides the ids
    out = tmp_path / "out"
    result = convert(f"--train_csv={tmp_path / 'train.csv'}", f"--validation_csv={tmp_path / 'eval.csv'}",
                     f"--labels_file={tmp_path / 'labels.txt'}", f"--output_dir={out}", "--project_id=unused")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"train: {len(train)} of {len(train)} images written" in result.stdout
    assert sorted(os.listdir(out)) == ["labels.txt", "rejected.csv", "train-00000-of-00001",
                                       "validation-00000-of-00001"]
    assert _rejections(out) == []
    for split, expected in (("train", train), ("validation", validation)):
        examples = {_feature(e, "image/filename")[0].decode(): e for e in _examples(str(out / f"{split}-*"))}
        assert sorted(examples) == sorted(os.path.basename(f["path"]) for f in expected)
        for source in expected:
            example = examples[os.path.basename(source["path"])]
            assert _feature(example, "image/class/label") == [{"object": 1, "cat": 2}[source["label"]]]
            assert _feature(example, "image/class/synset") == [source["label"].encode()]
            assert _feature(example, "image/format") == [b"JPEG"]
            assert _feature(example, "image/channels") == [3] and _feature(example, "image/colorspace") == [b"RGB"]
            stored = _feature(example, "image/encoded")[0]
            decoded = Image.open(io.BytesIO(stored))
            assert decoded.format == "JPEG" and decoded.mode in ("RGB", "L")
            original = Image.open(source["path"])
            assert _feature(example, "image/height") == [original.height]
            assert _feature(example, "image/width") == [original.width]
            if source["format"] == "JPEG" and source["mode"] in ("RGB", "L"):
                assert stored == source["bytes"], "JPEG input is stored unchanged"
            else:  # re-encoded: the same picture
                reference = np.asarray(original.convert("RGB"), np.float32)
                if source["mode"] == "RGBA":
                    alpha = np.asarray(original.getchannel("A"), np.float32)[..., None] / 255
                    reference = reference * alpha + 255 * (1 - alpha)
                assert np.abs(np.asarray(decoded.convert("RGB"), np.float32) - reference).mean() < 4
    # The trainer's own reader takes the output and sees the same labels (0-based there).
    dataset = classification_input.build_dataset(
        tf.io.gfile.glob(str(out / "train-*")), training=False, image_size=32, batch_size=4, num_classes=2,
        counters=RecordCounters("converted"))
    seen = sorted(int(label) for _, labels, weights in dataset for label, w in zip(labels, weights) if w > 0)
    assert seen == sorted({"object": 0, "cat": 1}[f["label"]] for f in train)


def test_every_bad_input_kind_is_counted_and_reported(photo_files, tmp_path):
    good = photo_files["files"][0]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good["bytes"][:len(good["bytes"]) * 2 // 3])  # the end of the scan is missing
    broken = bytearray(good["bytes"])
    broken[len(broken) // 2:len(broken) // 2 + 64] = b"\xff" * 64  # markers where entropy-coded data should be
    (tmp_path / "broken.jpg").write_bytes(bytes(broken))
    (tmp_path / "empty.jpg").write_bytes(b"")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image")
    png = next(f for f in photo_files["files"] if f["format"] == "PNG" and f["mode"] == "RGB")
    (tmp_path / "really_a_png.jpg").write_bytes(png["bytes"])
    rows = [[good["path"], good["label"]], [str(tmp_path / "missing.jpg"), "cat"], [str(truncated), "cat"],
            [str(not_an_image), "object"], [good["path"], "dog"], ["only-one-field"],
            [str(tmp_path / "broken.jpg"), "cat"], [str(tmp_path / "empty.jpg"), "cat"],
            [str(tmp_path / "really_a_png.jpg"), "object"]]
    _write_csv(tmp_path / "train.csv", rows)
    (tmp_path / "labels.txt").write_text("cat\nobject\n")
    out = tmp_path / "out"
    os.makedirs(out / ".jpeg_to_tf_record-20260101-000000-abcdef" / "listing")  # an interrupted run's
    result = convert(f"--train_csv={tmp_path / 'train.csv'}", f"--labels_file={tmp_path / 'labels.txt'}",
                     f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    rejections = {row["origin"].rsplit(":", 1)[1]: row for row in _rejections(out)}
    assert {line: row["reason"] for line, row in rejections.items()} == {
        "2": "missing_file", "3": "corrupt_image", "4": "corrupt_image", "5": "unknown_label",
        "6": "malformed_line", "7": "corrupt_image", "8": "corrupt_image"}
    assert "truncated" in rejections["3"]["detail"] and "cannot identify" in rejections["8"]["detail"]
    assert "train: 2 of 9 images written" in result.stdout
    for line in ("rejected corrupt_image: 4", "rejected missing_file: 1", "rejected unknown_label: 1",
                 "rejected malformed_line: 1", f"class {good['label']}: 1", "class object: 1",
                 "stored as JPEG (png_rgb): 1"):
        assert line in result.stdout, result.stdout
    written = {_feature(e, "image/filename")[0]: e for e in _examples(str(out / "train-*"))}
    assert sorted(written) == sorted([os.path.basename(good["path"]).encode(), b"really_a_png.jpg"])
    stored = Image.open(io.BytesIO(_feature(written[b"really_a_png.jpg"], "image/encoded")[0]))
    assert stored.format == "JPEG" and stored.size == Image.open(png["path"]).size  # re-encoded, not rejected
    assert sorted(os.listdir(out)) == ["labels.txt", "rejected.csv", "train-00000-of-00001"]  # no temp folders
    # A second run replaces the output instead of mixing with it.
    again = convert(f"--train_csv={tmp_path / 'train.csv'}", f"--labels_file={tmp_path / 'labels.txt'}",
                    f"--output_dir={out}", "--num_shards=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(f for f in os.listdir(out) if f.startswith("train")) == ["train-00000-of-00002",
                                                                          "train-00001-of-00002"]


def test_an_input_that_cannot_be_read_fails_in_one_line(tmp_path):
    result = convert(f"--train_csv={tmp_path / 'absent.csv'}", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot read")
    result = convert(f"--train_csv={tmp_path / 'a.csv'}", f"--image_folders={tmp_path}", f"--output_dir={tmp_path}")
    assert result.returncode == 2 and "exactly one input layout" in result.stderr


def test_a_write_that_fails_mid_shard_publishes_nothing_and_the_rerun_completes(photo_files, tmp_path):
    """A worker's write fails (a file-size limit: EFBIG, the path a full disk takes): one line naming the cause,
    no shards, no temporary folder; the same command then succeeds. An output that cannot be a folder: exit 2."""
    import resource
    import signal

    def limit_file_size():  # inherited by Beam's worker processes; SIGXFSZ ignored so the write raises instead
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8_000, 8_000))  # a shard is ~40 KB

    out = tmp_path / "out"
    failed = convert(f"--image_folders={photo_files['root']}", f"--output_dir={out}", preexec_fn=limit_file_size)
    assert failed.returncode == 1, failed.stderr[-3000:]
    last = failed.stderr.strip().splitlines()[-2:]
    assert last[0].startswith("error: the conversion stopped: ") and "File too large" in last[0], last
    assert last[1].startswith(f"Nothing was published: {out} holds no train-*/validation-* shards"), last
    assert sorted(os.listdir(out)) == ["labels.txt"]
    assert convert(f"--image_folders={photo_files['root']}", f"--output_dir={out}").returncode == 0
    assert len(_records(str(out / "train-*"))) + len(_records(str(out / "validation-*"))) == len(photo_files["files"])

    (tmp_path / "a_file").write_text("")
    refused = convert(f"--image_folders={photo_files['root']}", f"--output_dir={tmp_path / 'a_file' / 'out'}")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: cannot write to {tmp_path / 'a_file' / 'out'}")


def test_class_folders_give_a_seeded_split_and_labels_from_folder_names(photo_files, tmp_path):
    out = tmp_path / "out"
    result = convert(f"--image_folders={photo_files['root']}", "--validation_fraction=0.3", "--split_seed=7",
                     f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "labels.txt").read_text() == "cat\nobject\n"
    splits = {}
    for split in ("train", "validation"):
        records = _records(str(out / f"{split}-*"))
        splits[split] = {_feature(tf.train.Example.FromString(r), "image/filename")[0].decode() for r in records}
    assert not splits["train"] & splits["validation"]
    assert len(splits["train"]) + len(splits["validation"]) == len(photo_files["files"])
    assert splits["validation"], "0.3 of 10 files by a seeded hash: some go to validation"


def test_output_files_are_byte_identical_across_runs_and_runner_modes(photo_files, tmp_path):
    """The same listing gives the same files, byte for byte, whatever runs it: in-process, two threads, two
    processes (twice). Three shards each: every shard's content and order are fixed by the listing alone."""
    root = tmp_path / "photos"
    shutil.copytree(photo_files["root"], root)
    (root / "cat" / "cut_short.jpg").write_bytes(photo_files["files"][0]["bytes"][:300])
    layouts = {"in-process": ["--direct_num_workers=1", "--direct_running_mode=in_memory"],
               "threads": ["--direct_num_workers=2", "--direct_running_mode=multi_threading"],
               "processes": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
               "processes again": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]}
    contents = {}
    for name, layout in layouts.items():
        out = tmp_path / name.replace(" ", "_")
        result = convert(f"--image_folders={root}", "--validation_fraction=0.3", "--num_shards=3",
                         f"--output_dir={out}", *layout)
        assert result.returncode == 0, result.stderr[-3000:]
        contents[name] = {f: (out / f).read_bytes() for f in sorted(os.listdir(out))}
    first = contents["in-process"]
    assert sorted(first) == ["labels.txt", "rejected.csv"] + [f"{split}-0000{i}-of-00003" for split in
                                                              ("train", "validation") for i in range(3)]
    assert b"cut_short.jpg" in first["rejected.csv"]
    for name, files in contents.items():
        assert files == first, f"{name} wrote other bytes than in-process"
    records = _records(str(tmp_path / "in-process" / "train-*"))
    assert len(records) + len(_records(str(tmp_path / "in-process" / "validation-*"))) == len(photo_files["files"])


def test_shards_are_dealt_in_a_seeded_order_so_each_holds_every_class():
    from data import image_sources, jpeg_to_tf_record

    items = [image_sources.SourceImage(f"/{label}/{i}.jpg", "train", f"list.csv:{i}", label=label)
             for label in ("a", "b", "c") for i in range(40)]  # sorted by class, as folder listings are
    shards = jpeg_to_tf_record.plan_shards(items, 4)
    assert sorted(item.path for shard in shards for item in shard) == sorted(item.path for item in items)
    assert [len(shard) for shard in shards] == [30, 30, 30, 30]
    assert all({item.label for item in shard} == {"a", "b", "c"} for shard in shards)
    assert shards == jpeg_to_tf_record.plan_shards(list(items), 4)
    assert image_sources.from_json(image_sources.to_json(items[0])) == items[0]
    detection = image_sources.SourceImage("/x.jpg", "train", "x", objects=(image_sources.SourceObject(
        "car", (1.0, 2.0, 3.0, 4.0), 1, 5.0),), detection=True, problem=("invalid_box", "why"))
    assert image_sources.from_json(image_sources.to_json(detection)) == detection


def _coco_dataset(photo_files, tmp_path):
    """A COCO instances file over three of the photos with known pixel boxes (one crowd, one negative image)."""
    image_dir = tmp_path / "images"
    os.makedirs(image_dir)
    images, annotations = [], []
    boxes = {1: [[10, 5, 30, 40, 0], [50, 20, 40, 30, 1]], 2: [[0, 0, 112, 20, 0]], 3: []}  # x, y, w, h, crowd
    for image_id, source in zip((1, 2, 3), photo_files["files"]):
        name = f"scene{image_id}{os.path.splitext(source['path'])[1]}"
        (image_dir / name).write_bytes(source["bytes"])
        width, height = Image.open(source["path"]).size
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        for k, (x, y, w, h, crowd) in enumerate(boxes[image_id]):
            annotations.append({"id": 10 * image_id + k, "image_id": image_id, "category_id": 3 if k else 1,
                                "bbox": [x, y, w, h], "iscrowd": crowd, "area": w * h * 0.7})
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    return image_dir, images, annotations, categories, boxes


def test_coco_json_keeps_category_ids_boxes_crowd_and_area(photo_files, tmp_path):
    image_dir, images, annotations, categories, boxes = _coco_dataset(photo_files, tmp_path)
    bad_box = dict(annotations[0], id=99, image_id=3, bbox=[100, 10, 50, 10])  # past the right edge
    for split, listed in (("train", annotations), ("validation", annotations + [bad_box])):
        (tmp_path / f"{split}.json").write_text(json.dumps(
            {"images": images, "annotations": listed, "categories": categories}))
    out = tmp_path / "out"
    result = convert(f"--train_coco_json={tmp_path / 'train.json'}", f"--train_image_dir={image_dir}",
                     f"--validation_coco_json={tmp_path / 'validation.json'}",
                     f"--validation_image_dir={image_dir}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "labels.txt").read_text() == "person\nunused_2\ncar\n"
    assert [(r["split"], r["reason"]) for r in _rejections(out)] == [("validation", "box_outside_image")]
    examples = {_feature(e, "image/source_id")[0]: e for e in _examples(str(out / "train-*"))}
    assert sorted(examples) == [b"1", b"2", b"3"]
    for image in images:
        example = examples[str(image["id"]).encode()]
        expected = boxes[image["id"]]
        height, width = image["height"], image["width"]
        np.testing.assert_allclose(_feature(example, "image/object/bbox/ymin"), [b[1] / height for b in expected],
                                   rtol=1e-6)
        np.testing.assert_allclose(_feature(example, "image/object/bbox/xmax"),
                                   [(b[0] + b[2]) / width for b in expected], rtol=1e-6)
        assert _feature(example, "image/object/class/label") == [3 if k else 1 for k in range(len(expected))]
        assert _feature(example, "image/object/class/text") == [b"car" if k else b"person"
                                                               for k in range(len(expected))]
        assert _feature(example, "image/object/is_crowd") == [b[4] for b in expected]
        np.testing.assert_allclose(_feature(example, "image/object/area"), [b[2] * b[3] * 0.7 for b in expected])
    # The detection trainer's own evaluation reader: same boxes, labels and crowd flags.
    dataset = detection_input.build_dataset(
        tf.io.gfile.glob(str(out / "train-*")), training=False, image_size=(64, 64), padded_size=(128, 128),
        batch_size=3, num_classes=3, counters=RecordCounters("converted"))
    _, _, _, read_boxes, read_labels, read_crowd, _, weights = next(iter(dataset))
    assert int(tf.reduce_sum(weights)) == 3
    assert sorted(int(label) for label in tf.reshape(read_labels, [-1]) if label > 0) == [1, 1, 3]


def test_boxes_csv_in_pixels_and_normalized_give_the_same_records(photo_files, tmp_path):
    scenes = photo_files["files"][:3]
    outputs = {}
    for coordinates in ("pixels", "normalized"):
        rows = []
        for source in scenes:
            width, height = Image.open(source["path"]).size
            scale = (1, 1) if coordinates == "pixels" else (width, height)
            rows.append([source["path"], "cat", 8 / scale[0], 4 / scale[1], 60 / scale[0], 50 / scale[1]])
            rows.append([source["path"], "object", 20 / scale[0], 30 / scale[1], 100 / scale[0], 70 / scale[1]])
        rows.append([photo_files["files"][3]["path"], "", "", "", "", ""])  # a negative image
        _write_csv(tmp_path / f"{coordinates}.csv", rows)
        out = tmp_path / coordinates
        result = convert(f"--train_boxes_csv={tmp_path / f'{coordinates}.csv'}", f"--box_coordinates={coordinates}",
                         f"--output_dir={out}")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[coordinates] = {_feature(e, "image/filename")[0]: e for e in _examples(str(out / "train-*"))}
    assert len(outputs["pixels"]) == 4
    for name, example in outputs["pixels"].items():
        other = outputs["normalized"][name]
        for key in feature_keys.BOXES:
            np.testing.assert_allclose(_feature(example, key), _feature(other, key), rtol=1e-6)
        assert _feature(example, "image/object/class/label") == _feature(other, "image/object/class/label")
    negative = outputs["pixels"][os.path.basename(photo_files["files"][3]["path"]).encode()]
    assert _feature(negative, "image/object/class/label") == []
    first = outputs["pixels"][os.path.basename(scenes[0]["path"]).encode()]
    width, height = Image.open(scenes[0]["path"]).size
    np.testing.assert_allclose(_feature(first, "image/object/bbox/ymin"), [4 / height, 30 / height], rtol=1e-6)
    assert _feature(first, "image/object/class/label") == [1, 2]  # derived labels: cat, object


def test_both_trainers_train_on_converted_output(photo_files, tmp_path):
    out = tmp_path / "classification"
    assert convert(f"--image_folders={photo_files['root']}", "--validation_fraction=0.3",
                   f"--output_dir={out}").returncode == 0
    result = run_entrypoint([f"--training_data_path={out}/train-*", f"--validation_data_path={out}/validation-*",
                             f"--job-dir={tmp_path / 'job'}", "--num_classes=2", "--max_steps=2",
                             "--train_steps_per_eval=2", "--model_type=resnet-18", "--image_size=32",
                             "--train_batch_size=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.exists(tmp_path / "job" / "model" / "assets" / "labels.txt")

    image_dir, images, annotations, categories, _ = _coco_dataset(photo_files, tmp_path)
    (tmp_path / "coco.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                    "categories": categories}))
    detection = tmp_path / "detection"
    assert convert(f"--train_coco_json={tmp_path / 'coco.json'}", f"--train_image_dir={image_dir}",
                   f"--validation_coco_json={tmp_path / 'coco.json'}", f"--validation_image_dir={image_dir}",
                   f"--output_dir={detection}").returncode == 0
    result = run_entrypoint([f"--training_data_path={detection}/train-*",
                             f"--validation_data_path={detection}/validation-*", f"--job-dir={tmp_path / 'det'}",
                             "--num_classes=3", "--max_steps=2", "--train_steps_per_eval=2", "--resnet_depth=18",
                             "--image_size=128,128", "--train_batch_size=2"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AP=" in result.stderr and os.path.exists(tmp_path / "det" / "model" / "saved_model.pb")


def test_examples_built_without_tensorflow_are_tf_train_examples_byte_for_byte():
    from data import example_codec

    built = example_codec.detection_example(b"\xff\xd8bytes", [[0.1, 0.2, 0.5, 0.9]], [2], height=40, width=60,
                                            image_format="jpeg", source_id="7", class_names=["car"], areas=[12.5])
    serialized = built.SerializeToString(deterministic=True)
    parsed = tf.train.Example.FromString(serialized)
    assert parsed.SerializeToString(deterministic=True) == serialized
    assert list(parsed.features.feature["image/object/bbox/xmax"].float_list.value) == [np.float32(0.9)]
    assert list(parsed.features.feature["image/object/class/label"].int64_list.value) == [2]
    # And the other way: what TensorFlow writes, the codec's classes read.
    reference = tf.train.Example(features=tf.train.Features(feature={
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))}))
    assert example_codec.Example.FromString(reference.SerializeToString()).features.feature[
        "image/class/label"].int64_list.value == [3]
