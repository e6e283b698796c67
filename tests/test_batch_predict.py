"""`entrypoint.py batch_predict`: the trained classifier (conftest's trained_job) over image files, file lists and
TFRecords on Beam's RunInference (DirectRunner, one worker process per CPU); every input ends in exactly one of
the results and the errors file. The detector's formats are in test_detection_end_to_end.py, gs:// in test_gcs.py."""

import base64
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import REPO, run_entrypoint

ERRORS_FILE = "prediction.errors_stats-00000-of-00001"


def read_output(folder) -> tuple[dict, dict, list]:
    """({key: results line}, counts, [failure lines]) of a batch_predict output folder."""
    lines = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("prediction.results-"):
            for line in open(os.path.join(folder, name)):
                parsed = json.loads(line)
                assert parsed["key"] not in lines, f"{parsed['key']} predicted twice"
                lines[parsed["key"]] = parsed
    with open(os.path.join(folder, ERRORS_FILE)) as handle:
        counts, *failures = [json.loads(line) for line in handle]
    return lines, counts, failures


@pytest.fixture(scope="module")
def photos(digits, tmp_path_factory):
    """Real digit scans as a user's folder: JPEG and PNG files of several sizes, and three bad files."""
    folder = tmp_path_factory.mktemp("photos")
    record_path = sorted(tf.io.gfile.glob(digits["validation"]))[0]
    for index, record in enumerate(tf.data.TFRecordDataset(record_path).take(6)):
        encoded = tf.train.Example.FromString(record.numpy()).features.feature["image/encoded"].bytes_list.value[0]
        image = Image.open(io.BytesIO(encoded)).convert("RGB").resize((32 + 8 * index, 40))
        image.save(folder / f"digit_{index}.{'png' if index % 2 else 'jpg'}")
    whole = (folder / "digit_0.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[:whole.index(b"\xff\xda") + 40])  # a whole header, the data cut short
    (folder / "notes.txt").write_text("not a picture\n")
    # A decompression bomb: a PNG of 40,000 x 40,000 pixels (1.6 gigapixels) in 80 bytes.
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    size = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", size) + pixels + chunk(b"IEND", b""))
    Image.open(folder / "digit_1.png").save(folder / "scan.tiff")
    return folder


def test_image_files_and_a_file_list_put_every_input_in_the_results_or_the_errors(trained_job, photos, tmp_path):
    from client.served_model import ServedModel

    out = tmp_path / "files"
    result = run_entrypoint(["batch_predict", f"--model_dir={trained_job['model_dir']}", f"--input_paths={photos}/*",
                             f"--output_path={out}", "--top_k=3", "--batch_size=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    lines, counts, failures = read_output(out)
    good = sorted(str(photos / f"digit_{i}.{'png' if i % 2 else 'jpg'}") for i in range(6))
    assert sorted(lines) == good
    assert counts == {"inputs": 10, "predicted": 6, "errors": 4,
                      "errors_by_reason": {"not_an_image": 1, "not_decodable": 2, "unsupported_format": 1}}
    assert json.loads(result.stdout.splitlines()[-1])["predicted"] == 6
    reasons = {os.path.basename(item["input"]): item["reason"] for item in failures}
    assert reasons == {"cut.jpg": "not_decodable", "bomb.png": "not_decodable", "notes.txt": "not_an_image",
                       "scan.tiff": "unsupported_format"}
    assert "convert it to JPEG" in [f for f in failures if f["reason"] == "unsupported_format"][0]["error"]

    # The same numbers as the model called directly, with the names the model carries.
    model = ServedModel(trained_job["model_dir"])
    rows = model.call(good, [open(path, "rb").read() for path in good])
    for path, row in zip(good, rows):
        predictions = lines[path]["predictions"]
        assert len(predictions) == 3
        best = int(np.argmax(row["probabilities"]))
        assert predictions[0]["class"] == best and predictions[0]["label"] == best + 1
        assert predictions[0]["name"] == model.class_names[best]
        assert predictions[0]["score"] == pytest.approx(float(row["probabilities"][best]), abs=1e-5)

    # A file list: relative lines from the list's folder, absolute ones as they are, a missing file named.
    listing = photos / "lists"
    listing.mkdir(exist_ok=True)
    (listing / "batch.txt").write_text(f"../digit_0.jpg\n\n../digit_3.png\n{photos}/digit_4.jpg\n{photos}/gone.jpg\n")
    (listing / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe not text")  # one list is no text file
    out = tmp_path / "list"
    result = run_entrypoint(["batch_predict", f"--model_dir={trained_job['model_dir']}",
                             f"--input_paths={listing}/*.txt", f"--output_path={out}", "--data_format=file_list"])
    assert result.returncode == 0, result.stderr[-3000:]
    lines, counts, failures = read_output(out)
    assert sorted(lines) == ["../digit_0.jpg", "../digit_3.png", f"{photos}/digit_4.jpg"]
    assert len(lines["../digit_0.jpg"]["predictions"]) == 5  # --top_k's default
    assert counts["inputs"] == 5 and counts["errors_by_reason"] == {"unreadable": 2}
    unreadable = {item["input"]: item["error"] for item in failures}
    assert "cannot read" in unreadable[f"{photos}/gone.jpg"]
    assert "to its end (0 inputs listed before)" in unreadable[str(listing / "binary.txt")]


def test_records_and_json_instances_are_scored_as_they_are_and_a_rerun_replaces_the_output(
        trained_job, digits, tmp_path):
    out = tmp_path / "records"
    out.mkdir()
    (out / "prediction.results-00000-of-00009").write_text("left by an earlier run\n")
    result = run_entrypoint(["batch_predict", f"--model_dir={trained_job['model_dir']}",
                             f"--input_paths={digits['validation']}", f"--output_path={out}",
                             "--data_format=tf_record", "--top_k=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    lines, counts, failures = read_output(out)
    expected = sum(1 for path in tf.io.gfile.glob(digits["validation"]) for _ in tf.data.TFRecordDataset(path))
    assert counts == {"inputs": expected, "predicted": expected, "errors": 0, "errors_by_reason": {}}
    assert len(lines) == expected and not failures
    assert "prediction.results-00000-of-00009" not in os.listdir(out)
    # The records' own labels against the top class: the trained model is far above chance (0.1) here too.
    truth = {}
    for path in sorted(tf.io.gfile.glob(digits["validation"])):
        for index, record in enumerate(tf.data.TFRecordDataset(path)):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            source_id = feature["image/source_id"].bytes_list.value if "image/source_id" in feature else []
            key = source_id[0].decode() if source_id and source_id[0] else f"{path}:{index}"
            truth[key] = feature["image/class/label"].int64_list.value[0]
    assert set(truth) == set(lines), "keys are the records' image/source_id, else FILE:INDEX"
    right = sum(lines[key]["predictions"][0]["label"] == label for key, label in truth.items())
    assert right / expected > 0.5, right / expected

    # The first 20 records' images as AI Platform JSON instances: the same top classes under the given keys.
    first = sorted(tf.io.gfile.glob(digits["validation"]))[0]
    instances = []
    for index, record in enumerate(tf.data.TFRecordDataset(first).take(20)):
        encoded = tf.train.Example.FromString(record.numpy()).features.feature["image/encoded"].bytes_list.value[0]
        instances.append({"image_bytes": {"b64": base64.b64encode(encoded).decode()}, "key": f"{first}:{index}"})
    (tmp_path / "instances.jsonl").write_text("".join(json.dumps(instance) + "\n" for instance in instances))
    out = tmp_path / "json"
    result = run_entrypoint(["batch_predict", f"--model_dir={trained_job['model_dir']}",
                             f"--input_paths={tmp_path}/instances.jsonl", f"--output_path={out}",
                             "--data_format=jsonl", "--top_k=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    from_json, counts, _ = read_output(out)
    assert counts["predicted"] == 20 and set(from_json) == {instance["key"] for instance in instances}
    assert all(line["predictions"][0]["label"] == lines[key]["predictions"][0]["label"]
               for key, line in from_json.items())


def test_a_model_dir_that_is_no_model_or_a_pattern_that_matches_nothing_stops_in_one_line(trained_job, photos,
                                                                                           tmp_path):
    out = tmp_path / "never"
    for args, message in (([f"--model_dir={photos}", f"--input_paths={photos}/*.jpg"], "is not an exported model"),
                          ([f"--model_dir={trained_job['model_dir']}", f"--input_paths={photos}/*.webp"],
                           "matches no file"),
                          ([f"--model_dir={trained_job['model_dir']}", f"--input_paths={photos}/*.jpg",
                            "--runner=DataflowRunner"], "is not a gs:// path")):
        result = subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), "batch_predict", *args,
                                 f"--output_path={out}"], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert not out.exists(), "nothing is written"


def test_dataflow_gets_the_repository_and_tensorflows_pins_unless_an_image_is_given(tmp_path):
    from apache_beam.options.pipeline_options import DirectOptions, SetupOptions

    from client import batch_predict

    args, beam_args = batch_predict.parse_args(["--model_dir=gs://b/model", "--input_paths=gs://b/in/*",
                                                "--output_path=gs://b/out/", "--runner=DataflowRunner",
                                                "--project=p", "--region=us-central1"])
    options = batch_predict.pipeline_options(args, beam_args, str(tmp_path)).get_all_options()
    assert options["temp_location"] == "gs://b/out/tmp" and options["setup_file"].startswith(str(tmp_path))
    with open(options["requirements_file"]) as handle:
        pins = handle.read().split()
    with open(os.path.join(REPO, "requirements", "runtime.in")) as handle:
        tensorflow_pin = [line.split("#")[0].strip() for line in handle if line.startswith("tensorflow==")][0]
    assert tensorflow_pin in pins and any(pin.startswith("pillow==") for pin in pins)
    # The package Dataflow's workers install, built by Beam's own stager as a Dataflow launch does: it holds what
    # they run, and building it writes nothing into the repository (the image's /app is read-only).
    from apache_beam.runners.portability.stager import Stager

    before = sorted(os.listdir(REPO))
    (tmp_path / "dist").mkdir()
    sdist = Stager._build_setup_package(options["setup_file"], str(tmp_path / "dist"))
    assert sorted(os.listdir(REPO)) == before
    import tarfile

    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"client/batch_predict.py", "client/served_model.py", "algorithms/registry.py",
            "algorithms/detection/spec.py", "dataloaders/labels.py", "data/example_codec.py",
            "requirements/runtime.in"} <= names
    # ... and it installs, as a worker installs it (its setup.py reads the pins inside the sdist).
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                                "--target", str(tmp_path / "worker"), sdist], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert (tmp_path / "worker" / "client" / "batch_predict.py").exists()

    # The converter's Dataflow launch stages the same package, from a copy of its own.
    from data import jpeg_to_tf_record

    converter = jpeg_to_tf_record.pipeline_options(*jpeg_to_tf_record._parse_args(
        ["--train_csv=gs://b/train.csv", "--output_dir=gs://b/records", "--runner=DataflowRunner", "--project=p"]))
    setup_file = converter.view_as(SetupOptions).setup_file
    assert os.path.exists(setup_file) and not setup_file.startswith(REPO)

    args, beam_args = batch_predict.parse_args(["--model_dir=gs://b/m", "--input_paths=gs://b/i",
                                                "--output_path=gs://b/o", "--runner=DataflowRunner",
                                                "--sdk_container_image=gcr.io/p/img"])
    assert batch_predict.pipeline_options(args, beam_args, str(tmp_path / "other")).view_as(
        SetupOptions).requirements_file is None
    args, beam_args = batch_predict.parse_args(["--model_dir=m", "--input_paths=i", "--output_path=o"])
    local = batch_predict.pipeline_options(args, beam_args, str(tmp_path)).view_as(DirectOptions)
    assert local.direct_num_workers == len(os.sched_getaffinity(0)) and local.direct_running_mode == "multi_processing"
