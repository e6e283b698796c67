"""Object detection end to end on real images: digit scans pasted at known boxes onto real photos, trained
through the real command line (FPN and NAS-FPN), scored with pycocotools, exported and called."""

import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core import feature_keys
from dataloaders import tfrecord_files
from tests.conftest import run_entrypoint

# ResNet-18 at 128 px, levels 3-7 (NAS-FPN's levels), Adam: learns the digits in a few hundred steps on 2 cores.
DETECTION_FLAGS = ["--resnet_depth=18", "--image_size=128,128", "--train_batch_size=8", "--optimizer_type=adam",
                   "--initial_learning_rate=0.001", "--warmup_steps=20", "--learning_rate_decay_type=cosine",
                   "--aug_scale_min=0.8", "--aug_scale_max=1.2", "--seed=1"]
TRAIN_STEPS = 120


def _train(digit_detection, job_dir, metrics_file, *extra):
    args = [f"--training_data_path={digit_detection['train']}", f"--validation_data_path={digit_detection['validation']}",
            f"--job-dir={job_dir}", f"--num_classes={digit_detection['num_classes']}", *DETECTION_FLAGS, *extra]
    result = run_entrypoint(args, {"CLOUD_ML_HP_METRIC_FILE": metrics_file}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(metrics_file) as handle:
        reports = [json.loads(line) for line in handle if line.strip()]
    return {"job_dir": str(job_dir), "model_dir": os.path.join(job_dir, "model"), "log": result.stderr,
            "stdout": result.stdout, "reports": reports}


@pytest.fixture(scope="session")
def trained_detector(digit_detection, tmp_path_factory):
    root = tmp_path_factory.mktemp("detector")
    return _train(digit_detection, root / "job", str(root / "hypertune" / "output.metrics"), "--fpn_type=fpn",
                  f"--max_steps={TRAIN_STEPS}", f"--train_steps_per_eval={TRAIN_STEPS // 2}", "--log_every_steps=50")


def _untrained_ap(digit_detection, tmp_path) -> float:
    """COCO AP of a freshly initialised detector on the same validation set, through the same evaluation."""
    from algorithms import registry
    from algorithms.runtime.job_layout import JobLayout
    from algorithms.runtime.strategy import choose_strategy
    from algorithms.runtime.trainer import Trainer

    config = registry.parse_job_config([
        f"--training_data_path={digit_detection['train']}", f"--validation_data_path={digit_detection['validation']}",
        f"--job-dir={tmp_path / 'untrained'}", "--num_classes=3", "--max_steps=1", "--fpn_type=fpn",
        *DETECTION_FLAGS])
    task = registry.TASK_SPECS["detection"].make_task(config)
    strategy = choose_strategy("default")
    task.preflight()
    return Trainer(task, config, strategy, JobLayout.create(config.job_dir)).evaluate()["AP"]


def test_detector_learns_far_above_an_untrained_one(trained_detector, digit_detection, tmp_path):
    reports = trained_detector["reports"]
    assert [int(r["global_step"]) for r in reports] == [TRAIN_STEPS // 2, TRAIN_STEPS]
    best = max(float(r["AP"]) for r in reports)
    untrained = _untrained_ap(digit_detection, tmp_path)
    assert untrained < 0.01, untrained
    # The default anchors (4 x stride) give 93.5% of these digits an anchor at IoU >= 0.5; the unset --anchor_size
    # became 3 (100%).
    assert "chose --anchor_size=3, which fits 100.0%" in trained_detector["log"]
    # Seeded (--seed=1), every run on a machine gives the same AP: 0.1351 after 120 steps (2-core AMD EPYC; 0.0950
    # with the anchors at 4, 0.1260 with 4 after 200 steps, which cost CI 2 more minutes). The bound is 0.7x that:
    # another CPU's last bits send training elsewhere, as another seed would, and detection varies more than
    # classification (unseeded 300-step runs spanned 0.15-0.18).
    print(f"SEEDED OUTCOME detection AP {best}")
    assert best > 0.094, f"AP {best} after {TRAIN_STEPS} steps"
    assert f"best AP={best:.4f}" in trained_detector["stdout"]
    for name in ("AP50", "AP75", "APs", "APm", "APl", "ARmax100"):
        assert f" {name}=" in trained_detector["log"], f"{name} must be logged at each evaluation"


def _signature(model_dir):
    return tf.saved_model.load(model_dir).signatures["serving_default"]


def test_exported_signature_is_exactly_the_documented_one(trained_detector):
    serve = _signature(trained_detector["model_dir"])
    inputs = serve.structured_input_signature[1]
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in inputs.items()} == {
        "encoded_image": (tf.string, [None]), "key": (tf.string, [None])}
    outputs = {name: (spec.dtype, spec.shape.as_list()) for name, spec in serve.structured_outputs.items()}
    assert outputs == {"detection_boxes": (tf.float32, [None, 100, 4]), "detection_classes": (tf.float32, [None, 100]),
                       "detection_scores": (tf.float32, [None, 100]), "num_detections": (tf.float32, [None]),
                       "key": (tf.string, [None])}
    assert os.path.exists(os.path.join(trained_detector["model_dir"], "labels.txt"))
    assert os.path.exists(os.path.join(trained_detector["model_dir"], "deployment_config.yaml"))


def _validation_scenes(digit_detection, count):
    """(decoded uint8 image, truth boxes, 1-based labels) of the first validation records."""
    path = tfrecord_files.resolve_files(digit_detection["validation"], "validation")[0]
    scenes = []
    for record in tfrecord_files.read_records(path, 40):
        feature = tf.train.Example.FromString(record).features.feature
        labels = list(feature[feature_keys.OBJECT_LABEL].int64_list.value)
        if not labels:
            continue
        boxes = np.stack([feature[k].float_list.value for k in feature_keys.BOXES], axis=-1)
        image = np.asarray(Image.open(io.BytesIO(feature[feature_keys.IMAGE].bytes_list.value[0])).convert("RGB"))
        scenes.append((image, boxes, labels))
        if len(scenes) == count:
            break
    return scenes


def _encode(image, image_format):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def test_detections_on_jpeg_and_png_of_other_sizes_map_back_to_the_original_image(trained_detector, digit_detection):
    serve = _signature(trained_detector["model_dir"])
    scenes = _validation_scenes(digit_detection, 12)
    # Each 128x128 scene upscaled 2x and put top-left on a grey canvas that is taller (even scenes) or wider (odd
    # ones): another size and aspect ratio, objects at 0.94x their training size once the graph fits it to 128.
    canvases = [(272, 256), (256, 272)] * 6
    padded = []
    for (image, _, _), (height, width) in zip(scenes, canvases):
        canvas = np.full((height, width, 3), 128, np.uint8)
        canvas[:256, :256] = np.asarray(Image.fromarray(image).resize((256, 256), Image.BILINEAR))
        padded.append(canvas)
    encoded = [_encode(image, "JPEG" if i % 2 == 0 else "PNG") for i, image in enumerate(padded)]
    keys = [f"image-{i}".encode() for i in range(len(encoded))]
    outputs = serve(encoded_image=tf.constant(encoded), key=tf.constant(keys))
    assert list(outputs["key"].numpy()) == keys
    boxes, classes = outputs["detection_boxes"].numpy(), outputs["detection_classes"].numpy()
    scores, counts = outputs["detection_scores"].numpy(), outputs["num_detections"].numpy()
    assert ((boxes >= 0) & (boxes <= 1)).all()
    matched = 0
    for i, (image, truth, labels) in enumerate(scenes):
        count = int(counts[i])
        assert count == int((scores[i] > 0).sum()), "num_detections counts exactly the non-padded rows"
        assert set(np.unique(classes[i][:count])) <= {1.0, 2.0, 3.0} and not classes[i][count:].any()
        assert not boxes[i][count:].any() and not scores[i][count:].any()
        # Truth in the canvas' normalized coordinates: y * 256/height, x * 256/width.
        height, width = canvases[i]
        expected = truth * np.array([256 / height, 256 / width, 256 / height, 256 / width])
        for box in expected:  # where, not which: 120 CPU steps place the digits well but still confuse them
            ious = [_iou(box, boxes[i][j]) for j in range(min(count, 10))]
            matched += bool(ious) and max(ious) >= 0.5
    # Seeded, 120 CPU steps find 12 of these 19 objects at their true place on every run (2-core AMD EPYC; 13 with
    # the anchors at 4, 14 with 4 after 200 steps); the bound is 10, 0.83x that. A wrong mapping finds ~none.
    objects = len(sum((s[2] for s in scenes), []))
    print(f"SEEDED OUTCOME detection matched {matched} of {objects}")
    assert matched >= 0.52 * objects, f"{matched} of {objects} objects found at their true place"


def _iou(a, b):
    top_left = np.maximum(a[:2], b[:2])
    bottom_right = np.minimum(a[2:], b[2:])
    intersection = np.prod(np.maximum(bottom_right - top_left, 0))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - intersection
    return intersection / union if union > 0 else 0.0


def test_predict_prints_the_signatures_boxes_with_class_names(trained_detector, digit_detection, tmp_path):
    scenes = _validation_scenes(digit_detection, 3)
    paths = []
    for i, (image, _, _) in enumerate(scenes):
        path = tmp_path / f"scene{i}.{'jpg' if i % 2 == 0 else 'png'}"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    result = run_entrypoint(["predict", f"--model_dir={trained_detector['model_dir']}", f"--input={tmp_path}",
                             "--min_score=0.1", f"--output_images={tmp_path / 'drawn'}"])
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["image"] for line in lines] == sorted(paths)
    serve = _signature(trained_detector["model_dir"])
    for line in lines:
        direct = serve(encoded_image=tf.constant([open(line["image"], "rb").read()]), key=tf.constant([b""]))
        count = int(direct["num_detections"][0])
        kept = [j for j in range(count) if direct["detection_scores"][0][j] >= 0.1]
        assert len(line["predictions"]) == len(kept) > 0
        for prediction, j in zip(line["predictions"], kept):
            np.testing.assert_allclose(prediction["box"], direct["detection_boxes"][0][j].numpy(), atol=1e-4)
            assert prediction["label"] == int(direct["detection_classes"][0][j])
            assert prediction["name"] == str(prediction["label"] - 1)  # labels.txt of the digit set: "0", "1", "2"
        assert os.path.getsize(line["drawn"]) > 0


def test_batch_predict_writes_boxes_in_each_images_pixels_in_every_input_format(trained_detector, digit_detection,
                                                                                tmp_path):
    import base64

    from tests.test_batch_predict import read_output

    scenes = _validation_scenes(digit_detection, 6)
    # As above: each scene upscaled 2x, top-left on a taller or wider grey canvas (objects at 0.94x their training
    # size once fitted to 128 px); the boxes must come back in each image's own pixels.
    canvases = [(272, 256), (256, 300)] * 3
    lines, encoded = [], []
    for i, ((image, _, _), (height, width)) in enumerate(zip(scenes, canvases)):
        canvas = np.full((height, width, 3), 128, np.uint8)
        canvas[:256, :256] = np.asarray(Image.fromarray(image).resize((256, 256), Image.BILINEAR))
        encoded.append(_encode(canvas, "JPEG" if i % 2 else "PNG"))
        instance = {"image_bytes": {"b64": base64.b64encode(encoded[-1]).decode()}}
        lines.append(json.dumps({**instance, "key": f"scene-{i}"} if i else instance))  # the first without a key
    lines.insert(3, '{"image_bytes": {"b64": 42}}')
    (tmp_path / "instances.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "json"
    result = run_entrypoint(["batch_predict", f"--model_dir={trained_detector['model_dir']}",
                             f"--input_paths={tmp_path}/*.jsonl", f"--output_path={out}", "--data_format=jsonl",
                             "--min_score=0.1"])
    assert result.returncode == 0, result.stderr[-3000:]
    predicted, counts, failures = read_output(out)
    first = f"{tmp_path}/instances.jsonl:1"
    assert sorted(predicted) == sorted([first] + [f"scene-{i}" for i in range(1, 6)])
    assert counts["inputs"] == 7 and counts["errors_by_reason"] == {"bad_line": 1}
    assert failures[0]["input"] == f"{tmp_path}/instances.jsonl:4" and "line 4" in failures[0]["error"]
    matched = objects = 0
    for i, ((_, truth, labels), (height, width)) in enumerate(zip(scenes, canvases)):
        line = predicted[f"scene-{i}" if i else first]
        assert line["image_size"] == [height, width]
        scale = np.array([height, width, height, width], np.float32)
        for prediction in line["predictions"]:
            np.testing.assert_allclose(prediction["box"], np.array(prediction["box_normalized"]) * scale, atol=0.01)
            assert prediction["score"] >= 0.1 and prediction["name"] == str(prediction["label"] - 1)
        # Truth in this canvas' pixels: the scene fills its top-left 256x256.
        found = [np.array(p["box"]) for p in line["predictions"]]
        for box in truth * 256:
            objects += 1
            matched += any(_iou(box, other) >= 0.5 for other in found)
    # Seeded: 6 of these 9 (min_score 0.1, the detector above); a box left normalized or scaled wrong finds ~none.
    print(f"SEEDED OUTCOME batch_predict detection matched {matched} of {objects}")
    assert matched >= 0.4 * objects, f"{matched} of {objects} objects found at their pixel place"

    # The same images as files, then as a list of them: the same lines, keyed by path / by the list's line.
    folder = tmp_path / "scenes"
    folder.mkdir()
    names = [f"scene-{i}.{'jpg' if i % 2 else 'png'}" for i in range(6)]
    for name, content in zip(names, encoded):
        (folder / name).write_bytes(content)
    (tmp_path / "list.txt").write_text("".join(f"scenes/{name}\n" for name in names))
    by_json = [predicted[f"scene-{i}" if i else first] for i in range(6)]
    for data_format, pattern, keys in (("image_files", f"{folder}/*", [str(folder / name) for name in names]),
                                       ("file_list", f"{tmp_path}/list.txt", [f"scenes/{name}" for name in names])):
        out = tmp_path / data_format
        result = run_entrypoint(["batch_predict", f"--model_dir={trained_detector['model_dir']}",
                                 f"--input_paths={pattern}", f"--output_path={out}", f"--data_format={data_format}",
                                 "--min_score=0.1"])
        assert result.returncode == 0, result.stderr[-3000:]
        predicted, counts, failures = read_output(out)
        assert counts["inputs"] == counts["predicted"] == 6 and sorted(predicted) == sorted(keys)
        for key, line in zip(keys, by_json):  # batched with other images: equal up to float rounding
            assert predicted[key]["image_size"] == line["image_size"]
            again = predicted[key]["predictions"]
            assert [p["label"] for p in again] == [p["label"] for p in line["predictions"]], data_format
            for one, other in zip(again, line["predictions"]):
                np.testing.assert_allclose(one["box"], other["box"], atol=0.05)
                assert one["score"] == pytest.approx(other["score"], abs=1e-4)

    out = tmp_path / "records"
    result = run_entrypoint(["batch_predict", f"--model_dir={trained_detector['model_dir']}",
                             f"--input_paths={digit_detection['validation']}", f"--output_path={out}",
                             "--data_format=tf_record"])
    assert result.returncode == 0, result.stderr[-3000:]
    predicted, counts, failures = read_output(out)
    records = sum(1 for path in tf.io.gfile.glob(digit_detection["validation"]) for _ in tf.data.TFRecordDataset(path))
    assert counts == {"inputs": records, "predicted": records, "errors": 0, "errors_by_reason": {}}
    assert all(line["image_size"] == [128, 128] for line in predicted.values())


def test_serve_answers_boxes_in_each_images_pixels_on_vertex_and_on_sagemaker(trained_detector, digit_detection,
                                                                            tmp_path):
    """`serve` started as Vertex AI starts it (AIP_* variables, JSON instances of `encoded_image`) and as SageMaker
    does (/opt/ml/model/1, raw images on /invocations): the signature's boxes, in each image's own pixels."""
    import base64
    import shutil

    from tests.conftest import free_port
    from tests.test_serve import call, running_server

    scenes = _validation_scenes(digit_detection, 3)
    canvases = [(272, 256), (256, 300), (300, 256)]
    encoded = []
    for (image, _, _), (height, width) in zip(scenes, canvases):
        canvas = np.full((height, width, 3), 128, np.uint8)
        canvas[:256, :256] = np.asarray(Image.fromarray(image).resize((256, 256), Image.BILINEAR))
        encoded.append(_encode(canvas, "JPEG"))
    serve = _signature(trained_detector["model_dir"])
    direct = serve(encoded_image=tf.constant(encoded), key=tf.constant([b""] * 3))

    def assert_signatures_boxes(line, i):
        height, width = canvases[i]
        assert line["image_size"] == [height, width]
        count = int(direct["num_detections"][i])
        kept = [j for j in range(count) if direct["detection_scores"][i][j] >= 0.1]
        assert len(line["predictions"]) == len(kept) > 0
        scale = np.array([height, width, height, width], np.float32)
        for prediction, j in zip(line["predictions"], kept):
            np.testing.assert_allclose(prediction["box"], direct["detection_boxes"][i][j].numpy() * scale, atol=0.05)
            np.testing.assert_allclose(prediction["box_normalized"], direct["detection_boxes"][i][j].numpy(),
                                       atol=1e-4)
            assert prediction["label"] == int(direct["detection_classes"][i][j])
            assert prediction["name"] == str(prediction["label"] - 1)

    port = free_port()
    base, route = f"http://127.0.0.1:{port}", "/v1/endpoints/7/deployedModels/8"
    env = {"AIP_STORAGE_URI": trained_detector["model_dir"], "AIP_HTTP_PORT": str(port),
           "AIP_HEALTH_ROUTE": route, "AIP_PREDICT_ROUTE": f"{route}:predict"}
    body = {"instances": [{"encoded_image": {"b64": base64.b64encode(e).decode()}, "key": f"scene-{i}"}
                          for i, e in enumerate(encoded)], "parameters": {"confidenceThreshold": 0.1}}
    with running_server([], env, f"{base}{route}", tmp_path / "vertex.log"):
        status, answer = call(f"{base}{route}:predict", json.dumps(body).encode(), "application/json")
        assert status == 200 and [line["key"] for line in answer["predictions"]] == ["scene-0", "scene-1", "scene-2"]
        for i, line in enumerate(answer["predictions"]):
            assert_signatures_boxes(line, i)

    root = tmp_path / "ml"
    shutil.copytree(trained_detector["model_dir"], root / "model" / "1")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"SAGEMAKER_BASE_DIR": str(root), "SAGEMAKER_BIND_TO_PORT": str(port), "SERVE_MIN_SCORE": "0.1"}
    with running_server([], env, f"{base}/ping", tmp_path / "sagemaker.log"):
        assert call(f"{base}/ping")[1]["task"] == "detection"
        for i, content in enumerate(encoded):
            status, answer = call(f"{base}/invocations", content, "image/jpeg")
            assert status == 200
            assert_signatures_boxes(answer["predictions"][0], i)


def test_report_has_the_precision_recall_curve_and_drawn_predictions(trained_detector):
    report = os.path.join(trained_detector["job_dir"], "report")
    for name in ("metrics.csv", "curves.png", "precision_recall.png", "predictions.png", "report.html",
                 "precision_recall_iou50.csv"):
        assert os.path.getsize(os.path.join(report, name)) > 0, name
    with open(os.path.join(report, "metrics.csv")) as handle:
        header = handle.readline()
    assert "AP" in header.split(",") and "AP50" in header.split(",")
    figure = np.asarray(Image.open(os.path.join(report, "predictions.png")))
    assert figure.std() > 10, "the predictions grid is not blank"


def test_nasfpn_on_one_category_loss_falls_resumes_exports_and_reports_ap(tmp_path):
    """NAS-FPN on a one-category set (--num_classes=1, "find the one kind of thing") through the same command
    line: its loss falls over 40 steps (too few for a meaningful AP), it resumes after a restart, reports AP at
    each evaluation and exports the signature, whose detections are all of class 1."""
    from data.sample_data import build_digit_detection

    data = build_digit_detection(str(tmp_path / "one"), image_size=128, num_train=96, num_validation=16,
                                 num_classes=1)
    job = tmp_path / "nasfpn"
    # No bit-for-bit check here: oneDNN's faster CPU kernels (conftest.FAST_FLAGS).
    common = ["--fpn_type=nasfpn", "--nasfpn_num_repeats=2", "--train_steps_per_eval=20", "--log_every_steps=10",
              "--deterministic_ops=false"]
    first = _train(data, job, str(tmp_path / "m1"), *common, "--max_steps=20")
    second = _train(data, job, str(tmp_path / "m2"), *common, "--max_steps=40")
    assert "resumed from" in second["log"] and "at step 20" in second["log"]
    losses = [float(line.split("loss=")[1].split()[0]) for line in first["log"].splitlines() + second["log"].splitlines()
              if " loss=" in line and "step " in line]
    assert losses[-1] < losses[0], losses
    reports = first["reports"] + second["reports"]
    assert [int(r["global_step"]) for r in reports] == [20, 40] and all(0 <= float(r["AP"]) <= 1 for r in reports)
    logged = re.findall(r"eval at step \d+: AP=([0-9.]+)", first["log"] + second["log"])  # README's SageMaker regex
    assert [float(r["AP"]) for r in reports] == [pytest.approx(float(value), abs=1e-4) for value in logged]
    model = tf.saved_model.load(first["model_dir"])
    assert model.signatures["class_names"]()["class_names"].numpy().tolist() == [b"0"]
    serve = model.signatures["serving_default"]
    assert set(serve.structured_outputs) == {"detection_boxes", "detection_classes", "detection_scores",
                                             "num_detections", "key"}
    image = _validation_scenes(data, 1)[0][0]
    outputs = serve(encoded_image=tf.constant([_encode(image, "PNG")]), key=tf.constant([b"k"]))
    classes = outputs["detection_classes"].numpy()[0, :int(outputs["num_detections"].numpy()[0])]
    assert set(classes.tolist()) <= {1.0}
    assert outputs["detection_boxes"].shape == (1, 100, 4)
