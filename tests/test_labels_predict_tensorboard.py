"""Around training: labels travel with the model, `predict` on real images, TensorBoard events, early stopping."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from tests.conftest import FAST_FLAGS, REPO

DIGIT_NAMES = [str(d) for d in range(10)]


def test_labels_travel_in_the_assets_beside_the_model_and_in_a_signature(trained_job):
    model_dir = trained_job["model_dir"]
    assert open(os.path.join(model_dir, "labels.txt")).read().split() == DIGIT_NAMES
    assert open(os.path.join(model_dir, "assets", "labels.txt")).read().split() == DIGIT_NAMES
    names = tf.saved_model.load(model_dir).signatures["class_names"]()["class_names"].numpy()
    assert [n.decode() for n in names] == DIGIT_NAMES


@pytest.fixture(scope="module")
def image_folder(digits, tmp_path_factory):
    """Real digit scans from the validation records, as .jpg/.png files a user would have."""
    folder = tmp_path_factory.mktemp("images")
    record_path = sorted(tf.io.gfile.glob(digits["validation"]))[0]
    for index, record in enumerate(tf.data.TFRecordDataset(record_path).take(12)):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        extension = feature["image/format"].bytes_list.value[0].decode().lower().replace("jpeg", "jpg")
        (folder / f"digit_{index:02d}.{extension}").write_bytes(feature["image/encoded"].bytes_list.value[0])
    return folder


def test_predict_prints_what_the_saved_model_returns(trained_job, image_folder, tmp_path):
    drawn = tmp_path / "drawn"
    result = subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), "predict",
                             f"--model_dir={trained_job['model_dir']}", f"--input={image_folder}", "--top_k=3",
                             f"--output_images={drawn}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    paths = sorted(str(p) for p in image_folder.iterdir())
    assert [line["image"] for line in lines] == paths

    serve = tf.saved_model.load(trained_job["model_dir"]).signatures["serving_default"]
    outputs = serve(image_bytes=tf.constant([open(p, "rb").read() for p in paths]), key=tf.constant(paths))
    probabilities = outputs["probabilities"].numpy()
    for line, row in zip(lines, probabilities):
        top = line["predictions"]
        assert len(top) == 3
        assert top[0]["class"] == int(row.argmax()) and top[0]["name"] == DIGIT_NAMES[int(row.argmax())]
        assert top[0]["label"] == top[0]["class"] + 1
        assert top[0]["score"] == pytest.approx(float(row.max()), abs=1e-5)
        assert top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    for line in lines:
        picture = np.asarray(Image.open(line["drawn"]).convert("RGB"))
        assert picture.std() > 10  # a real image with a label drawn, not a blank canvas


def test_predict_with_a_glob_and_a_bad_input(trained_job, image_folder):
    from client import predict

    assert len(predict.find_images(str(image_folder / "*.png"))) == 6
    code = subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), "predict",
                           f"--model_dir={trained_job['model_dir']}", f"--input={image_folder}/*.tiff"],
                          capture_output=True, text=True, timeout=300)
    assert code.returncode == 2 and "matches no image" in code.stderr


def test_predict_names_each_bad_file_and_predicts_the_rest(trained_job, image_folder, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(image_folder, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "folder.jpg").mkdir()
    result = subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), "predict",
                             f"--model_dir={trained_job['model_dir']}", f"--input={folder}", "--batch_size=4"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = {line["image"]: line for line in map(json.loads, result.stdout.splitlines())}
    assert sorted(lines) == sorted(str(p) for p in folder.iterdir())
    assert lines[str(folder / "broken.jpg")]["error"].startswith(
        f"{folder}/broken.jpg is not a decodable image (JPEG, PNG, GIF or BMP")
    assert lines[str(folder / "folder.jpg")]["error"].startswith(f"cannot read {folder}/folder.jpg: ")
    good = [line for path, line in lines.items() if "digit_" in path]
    assert len(good) == 12 and all(len(line["predictions"]) == 5 for line in good)
    assert f"ERROR: {folder}/broken.jpg is not a decodable image" in result.stderr
    zero = subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), "predict",
                           f"--model_dir={trained_job['model_dir']}", f"--input={folder}", "--batch_size=0"],
                          capture_output=True, text=True, timeout=300)
    assert zero.returncode == 2 and "ERROR: --batch_size=0 must be at least 1" in zero.stderr


def test_tensorboard_events_hold_the_training_and_eval_scalars(trained_job):
    values, images = {}, set()
    for path in tf.io.gfile.glob(os.path.join(trained_job["job_dir"], "logs", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    images.add(value.tag)  # encoded images: [width, height, png bytes]
                    continue
                values.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    assert {"train/loss", "train/learning_rate", "train/images_per_second", "eval/top_1_accuracy",
            "eval/top_5_accuracy"} <= set(values)
    assert {"report/predictions", "report/confusion_matrix", "report/curves"} <= set(images)
    assert [step for step, _ in values["eval/top_1_accuracy"]] == [50, 100, 150]
    reported = [float(r["top_1_accuracy"]) for r in trained_job["reports"]]
    assert [v for _, v in values["eval/top_1_accuracy"]] == pytest.approx(reported, abs=1e-6)


def test_early_stopping_stops_after_the_patience_and_keeps_the_best_model(trained_job, digits, tmp_path, monkeypatch):
    """Continue the trained job with a learning rate that wrecks it: the next evaluations cannot beat the
    best, so the job stops after `patience` of them and the best model stays in place."""
    from algorithms import registry

    job_dir = tmp_path / "job"
    shutil.copytree(trained_job["job_dir"], job_dir)
    before = yaml.safe_load(open(job_dir / "model" / "deployment_config.yaml"))["labels"]["global_step"]
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "m"))
    args = [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            f"--job_dir={job_dir}", "--num_classes=10", "--max_steps=200", "--train_steps_per_eval=2",
            "--early_stopping_patience=2", *FAST_FLAGS, "--initial_learning_rate=0.05",
            "--learning_rate_decay_type=constant", "--warmup_steps=0"]
    summary = registry.run_job(registry.parse_job_config(args))
    assert summary.best_step == int(before)
    # Evaluations at 152, 154, ...: the job stops at the first one that is `patience` (2) evaluations past the best.
    assert summary.final_step == max(152, summary.best_step + 2 * 2)
    assert yaml.safe_load(open(job_dir / "model" / "deployment_config.yaml"))["labels"]["global_step"] == before


def test_training_report_files(trained_job):
    report = os.path.join(trained_job["job_dir"], "report")
    import csv

    rows = list(csv.DictReader(open(os.path.join(report, "metrics.csv"))))
    assert [r["step"] for r in rows] == ["50", "100", "150"]
    assert [float(r["top_1_accuracy"]) for r in rows] == pytest.approx(
        [float(r["top_1_accuracy"]) for r in trained_job["reports"]], abs=1e-5)
    assert all(float(r["train_loss"]) > 0 for r in rows)
    for name in ("curves.png", "confusion_matrix.png", "predictions.png"):
        picture = np.asarray(Image.open(os.path.join(report, name)).convert("L"), dtype=float)
        assert picture.shape[0] > 200 and picture.shape[1] > 200 and picture.std() > 10, name
    page = open(os.path.join(report, "report.html")).read()
    assert all(f'src="{name}"' in page for name in ("curves.png", "confusion_matrix.png", "predictions.png"))


def test_confusion_matrix_counts_are_the_last_evaluations_predictions(trained_job, digits):
    lines = open(os.path.join(trained_job["job_dir"], "report", "confusion_matrix.csv")).read().splitlines()
    assert lines[0] == "true\\predicted," + ",".join(DIGIT_NAMES)
    matrix = np.array([[int(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert matrix.shape == (10, 10) and matrix.sum() == digits["num_validation"]
    last_accuracy = float(trained_job["reports"][-1]["top_1_accuracy"])
    assert np.trace(matrix) / matrix.sum() == pytest.approx(last_accuracy, abs=1e-6)


def test_a_report_that_cannot_be_drawn_never_fails_the_job(digits, tmp_path, monkeypatch, caplog):
    from algorithms import registry
    from algorithms.classification.task import ClassificationTask

    def broken(self, serving):
        raise RuntimeError("no fonts on this machine")

    monkeypatch.setattr(ClassificationTask, "report_figures", broken)
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "m"))
    args = [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            f"--job_dir={tmp_path / 'job'}", "--num_classes=10", "--max_steps=1", "--train_steps_per_eval=1",
            *FAST_FLAGS]
    with caplog.at_level("WARNING"):
        summary = registry.run_job(registry.parse_job_config(args))
    assert summary.final_step == 1 and os.path.exists(tmp_path / "job" / "model" / "saved_model.pb")
    assert "no fonts on this machine" in caplog.text
    assert os.path.exists(tmp_path / "job" / "report" / "metrics.csv")
    assert os.path.exists(tmp_path / "job" / "report" / "curves.png")
