"""One image, every platform: SageMaker's `IMAGE train` contract, the TPU ResNet trainer's command line
(seed 002), --epochs, quoted values, and one-category detection."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from algorithms import registry
from platforms import google_cloud, sagemaker
from core.errors import UserInputError
from tests.conftest import REPO, run_entrypoint

# What a user puts in SageMaker's metric_definitions (README): each must read this job's own log lines.
METRIC_DEFINITIONS = {"validation:top_1_accuracy": r"eval at step \d+: top_1_accuracy=([0-9.]+)",
                      "validation:loss": r"eval at step \d+: .*eval_loss=([0-9.]+)",
                      "train:loss": r"step \d+/\d+ loss=([0-9.]+)"}


def _photo_tree(root, per_class=16):
    from tests.test_converters import PHOTOS, _photo

    for class_name, names in PHOTOS.items():
        os.makedirs(root / class_name)
        for i in range(per_class):
            crop = _photo(names[i % len(names)], (64 + 4 * (i % 5), 80))[i % 8:, i % 10:]
            extension = ("jpg", "png", "jpeg")[i % 3]  # grayscale and RGB photos, JPEG and PNG
            Image.fromarray(crop).save(root / class_name / f"{class_name}_{i}.{extension}")
    (root / "cat" / "notes.txt").write_text("not an image: ignored")


def _sagemaker_root(tmp_path, hyperparameters, channels=("training",)):
    """A temp dir laid out exactly as SageMaker lays out /opt/ml for a File-mode job on one host."""
    root = tmp_path / "opt_ml"
    config = root / "input" / "config"
    os.makedirs(config)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(json.dumps({
        name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
        for name in channels}))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
    for name in channels:
        _photo_tree(root / "input" / "data" / name)
    return root


def _train_process(root):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "entrypoint.py"), "train"], cwd=REPO, text=True,
                            env={**os.environ, "SAGEMAKER_BASE_DIR": str(root)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_a_sagemaker_job_trains_from_class_folders_is_stopped_by_sigterm_and_resumes(tmp_path):
    # Every value a string, some JSON-quoted again as the Python SDK sends them; SageMaker names and ours mixed.
    root = _sagemaker_root(tmp_path, {
        "epochs": "\"4\"", "batch_size": "4", "optimizer": "\"adam\"", "learning_rate": "0.002", "beta_1": "0.9",
        "beta_2": "0.999", "momentum": "0.9", "early_stopping": "False", "augmentation": "False",
        "augmentation_random_rotation": "0.2", "image_resize_interpolation": "bilinear", "label_smoothing": "0.1",
        "validation_split_ratio": "0.25", "sagemaker_region": "\"us-east-1\"",
        "model_type": "\"resnet-18\"", "image_size": "32", "log_every_steps": "1", "train_steps_per_eval": "9"})
    process = _train_process(root)
    log, total = [], None
    for line in process.stderr:
        log.append(line)
        found = re.search(r" step 3/(\d+) ", line)
        if found:
            total = int(found.group(1))
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    log = "".join(log) + rest
    assert process.returncode == 128 + signal.SIGTERM, log[-3000:]
    images = int(re.search(r"--epochs=4: (\d+) training images \(counted in ", log).group(1))
    assert total == -(-4 * images // 4) and 16 <= images < 32, log[-3000:]  # ceil(epochs x images / batch)
    assert "--num_classes=2: the class folders" in log and "task: classification (chosen by class folders in " in log
    saved = [name for name in os.listdir(root / "checkpoints") if name.endswith(".index")]
    assert saved, "the stop saved a checkpoint to /opt/ml/checkpoints (the spot sync dir)"
    assert (root / "output" / "failure").read_text().startswith("STOPPED: stopped by SIGTERM at step ")

    # The restarted spot instance: the same files, the same command.
    rerun = _train_process(root)
    stdout, log = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log[-3000:]
    step = int(saved[0].split("-")[1].split(".")[0])
    assert f"resumed from {root}/checkpoints/ckpt-{step} at step {step}" in log
    assert not (root / "output" / "failure").exists(), "a finished job leaves no failure reason"
    model_dir = root / "model" / "1"
    assert (model_dir / "labels.txt").read_text().split() == ["cat", "object"]
    assert sorted(os.listdir(root / "model")) == ["1"], "nothing but the numbered SavedModel in model/"
    model = tf.saved_model.load(str(model_dir))
    assert model.signatures["class_names"]()["class_names"].numpy().tolist() == [b"cat", b"object"]
    serve = model.signatures["serving_default"]
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in serve.structured_input_signature[1].items()} == {
        "image_bytes": (tf.string, [None]), "key": (tf.string, [None])}
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in serve.structured_outputs.items()} == {
        "classes": (tf.int64, [None]), "probabilities": (tf.float32, [None, 2]), "key": (tf.string, [None])}
    photo = next((root / "input" / "data" / "training" / "cat").glob("*.jpg")).read_bytes()
    outputs = serve(image_bytes=tf.constant([photo]), key=tf.constant([b"k"]))
    assert outputs["probabilities"].shape == (1, 2) and np.isclose(outputs["probabilities"].numpy().sum(), 1.0)
    assert (root / "output" / "data" / "report.html").exists()
    for name, pattern in METRIC_DEFINITIONS.items():
        values = [float(v) for v in re.findall(pattern, log)]
        assert values and all(np.isfinite(values)), f"{name}: {pattern} reads nothing"
    evaluations = [step for step in range(step + 1, total + 1) if step % 9 == 0 or step == total]
    assert re.findall(r"eval at step (\d+): top_1_accuracy=", log) == [str(s) for s in evaluations]


@pytest.mark.parametrize("hyperparameters,expected", [
    ({"optimizer": "lamb"}, "hyperparameter optimizer='lamb' is not supported: use one of adam, sgd"),
    ({"augmentation": "True"}, "hyperparameter augmentation_random_flip='horizontal_and_vertical' is not supported"),
    ({"batch_size": "many"}, "hyperparameter batch_size='many' must be an integer"),
    ({"image_size": "big"}, "--image_size='big' must be an integer number of pixels"),
    ({"num_layers": "4"}, "hyperparameter num_layers='4' is unknown"),
])
def test_a_bad_hyperparameter_writes_the_failure_reason_and_exits_non_zero(tmp_path, monkeypatch, capsys,
                                                                          hyperparameters, expected):
    import entrypoint

    root = _sagemaker_root(tmp_path, hyperparameters)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(root))
    assert entrypoint.main(["train"]) == 2
    assert expected in capsys.readouterr().err
    reason = (root / "output" / "failure").read_text()
    assert reason.startswith("ERROR: ") and expected in reason and len(reason.strip().splitlines()) == 1, reason
    assert not (root / "model").exists() or not os.listdir(root / "model")


def test_sagemaker_hyperparameters_map_onto_the_flags():
    ours = set(registry.new_flag_values())
    flags = sagemaker.hyperparameter_flags({
        "epochs": "\"5\"", "batch_size": "64", "learning_rate": "0.01", "optimizer": "nesterov", "momentum": "0.8",
        "beta_1": "0.9", "dropout_rate": "0.3", "regularizers_l2": "0.0001", "train_only_top_layer": "True",
        "early_stopping": "True", "early_stopping_patience": "3", "early_stopping_min_delta": "0.0",
        "reinitialize_top_layer": "Auto", "binary_mode": "False", "eval_metric": "accuracy",
        "augmentation": "True", "augmentation_random_flip": "horizontal", "augmentation_random_rotation": "0",
        "augmentation_random_zoom": "0.1", "pretrained_weights": "imagenet"}, ours)
    assert flags == ["--train_batch_size=64", "--dropout_rate=0.3", "--early_stopping_patience=3", "--epochs=5",
                     "--initial_learning_rate=0.01", "--pretrained_weights=imagenet", "--regularizers_l2=0.0001",
                     "--train_only_top_layer=True", "--optimizer_type=momentum",
                     "--optimizer_arguments=momentum=0.8,use_nesterov=true"]
    assert sagemaker.hyperparameter_flags({"optimizer": "sgd", "max_steps": "7"}, ours) == [
        "--max_steps=7", "--optimizer_type=momentum", "--optimizer_arguments=momentum=0"]
    with pytest.raises(UserInputError, match="early_stopping_min_delta='0.01' is not supported"):
        sagemaker.hyperparameter_flags({"early_stopping_min_delta": "0.01"}, ours)
    with pytest.raises(UserInputError, match="training does not rotate images"):
        sagemaker.hyperparameter_flags({"augmentation": "True", "augmentation_random_flip": "horizontal"}, ours)


def test_a_record_channel_is_globbed_without_its_labels_file(tmp_path, digits):
    import shutil

    channel = tmp_path / "training"
    os.makedirs(channel)
    for path in tf.io.gfile.glob(digits["train"]):
        shutil.copy(path, channel)
    (channel / "labels.txt").write_text("\n".join("0123456789") + "\n")
    assert sagemaker._channel_path(str(channel), "training") == (f"{channel}/train-0000*", f"{channel}/labels.txt")
    os.remove(channel / "labels.txt")
    assert sagemaker._channel_path(str(channel), "training") == (f"{channel}/*", None)


def test_sagemaker_hosts_become_a_multi_worker_cluster():
    hosts = {"hosts": ["algo-2", "algo-1"], "current_host": "algo-2"}
    assert sagemaker.cluster_config(hosts) == {"cluster": {"worker": ["algo-1:2222", "algo-2:2222"]},
                                               "task": {"type": "worker", "index": 1}}
    assert sagemaker.cluster_config({"hosts": ["algo-1"], "current_host": "algo-1"}) is None


def test_the_tpu_resnet_command_line_trains_a_resnet18_and_exports_a_timestamped_copy(tmp_path):
    from data.sample_data import build_digits

    data = build_digits(str(tmp_path / "data"), image_size=32, validation_fraction=0.45, num_classes=5)
    out = tmp_path / "trained"
    # Seed 002's line with local paths; only --train_steps/--steps_per_eval are cut (1000/250 -> 10/5) and
    # --image_size=32 added, so it runs in seconds on a CPU.
    result = run_entrypoint([
        f"--data_dir={tmp_path / 'data'}", f"--model_dir={out}", "--resnet_depth=18", "--train_batch_size=128",
        "--eval_batch_size=32", "--skip_host_call=True", "--steps_per_eval=5", "--train_steps=10",
        f"--num_train_images={data['num_train']}", "--num_eval_images=370", "--num_label_classes=5",
        f"--export_dir={out}/export", "--image_size=32"])
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr
    assert "task: classification (chosen by image/class/label in the first record" in log
    assert "accepted and ignored (they configure a TPU runtime): --skip_host_call=True" in log
    assert "training classification from step 0 to 10, batch 128, evaluating every 5 steps" in log
    assert "eval_images=370" in log
    (version,) = os.listdir(out / "export")
    assert re.fullmatch(r"\d{10}", version), version  # the deploy step takes `gsutil ls .../export/ | tail -1`
    copy = tf.saved_model.load(str(out / "export" / version))
    assert copy.signatures["class_names"]()["class_names"].numpy().tolist() == [b"0", b"1", b"2", b"3", b"4"]
    for name in ("saved_model.pb", "variables/variables.index", "labels.txt"):
        assert (out / "export" / version / name).read_bytes() == (out / "model" / name).read_bytes(), name
    shapes = tf.train.list_variables(str(out / "export" / version / "variables" / "variables"))
    parameters = sum(int(np.prod(shape)) for name, shape in shapes if "OBJECT_GRAPH" not in name)
    assert 11.1e6 < parameters < 11.3e6, f"{parameters} parameters: not a ResNet-18 (11.2M; EfficientNet-B0: 4M)"


def test_routing_follows_the_data_and_contradicting_flags_are_one_line(digits, digit_detection):
    data = [f"--training_data_path={digits['train']}", "--num_classes=10"]
    config = registry.parse_job_config([*data, "--max_steps=1", "--resnet_depth=34"])
    assert (config.task, config.task_params.model_type) == ("classification", "resnet-34")
    config = registry.parse_job_config([*data, "--max_steps=1", "--task=classification", "--resnet_depth=18"])
    assert config.task_params.model_type == "resnet-18", "never silently EfficientNet-B0"
    for flags, expected in ((["--fpn_type=nasfpn"], "--fpn_type is a flag of object detection, but this job is "
                                                     "image classification (image/class/label in the first record"),
                            (["--resnet_depth=18", "--model_type=efficientnet-b0"], "give one of them"),
                            (["--resnet_depth=19"], "the ResNet classifiers have depths 18, 34, 50"),
                            (["--train_steps=5", "--max_steps=6"], "--train_steps=5 sets --max_steps=5, but "
                                                                    "--max_steps=6 is given too")):
        with pytest.raises(UserInputError, match=re.escape(expected)):
            registry.parse_job_config([*data, *(["--max_steps=1"] if "--max_steps=6" not in flags else []), *flags])
    detection = registry.parse_job_config([f"--training_data_path={digit_detection['train']}", "--num_classes=3",
                                           "--max_steps=1", "--resnet_depth=18"])
    assert (detection.task, detection.task_params.resnet_depth) == ("detection", 18)


def test_epochs_become_steps_and_quoted_values_lose_their_quotes(digits):
    data = [f"--training_data_path={digits['train']}", "--num_classes=10", "--train_batch_size=100"]
    config = registry.parse_job_config([*data, "--epochs=2", "--model_type='resnet-18'", "--optimizer_type=\"adam\""])
    assert config.max_steps == -(-2 * digits["num_train"] // 100)  # records counted from the files' framing
    assert (config.task_params.model_type, config.optimizer.optimizer_type) == ("resnet-18", "adam")
    assert registry.parse_job_config([*data, "--epochs=0.5", "--num_train_images=1000"]).max_steps == 5
    with pytest.raises(UserInputError, match="--epochs=1.0 and --max_steps=3 both set the training length"):
        registry.parse_job_config([*data, "--epochs=1", "--max_steps=3"])
    with pytest.raises(UserInputError, match=re.escape("--max_steps (or --epochs) is required")):
        registry.parse_job_config(data)


def test_one_class_folder_is_refused_naming_detection(tmp_path, capsys):
    """A one-class classifier is meaningless; one-category detection trains (tests/test_detection_end_to_end.py)."""
    import entrypoint

    folders = tmp_path / "trees"
    _photo_tree(folders, per_class=3)
    os.rename(folders / "object", tmp_path / "elsewhere")
    assert entrypoint.main([f"--training_data_path={folders}", f"--job-dir={tmp_path / 'c'}", "--max_steps=1"]) == 2
    error = capsys.readouterr().err
    assert "ERROR: --num_classes=1: a classifier needs at least 2 classes" in error and "detection" in error
    assert not (tmp_path / "c" / "model").exists()
    os.rename(tmp_path / "elsewhere", folders / "object")
    assert entrypoint.main([f"--training_data_path={folders}", f"--job-dir={tmp_path / 'c'}", "--max_steps=1",
                            "--num_classes=3"]) == 2
    assert "has 2 class folders (cat, object) but --num_classes=3" in capsys.readouterr().err


def test_tpu_detection_from_the_platforms_real_formats():
    ai_platform = {"TPU_CONFIG": json.dumps({"project": "my-project", "zone": "us-central1-b",
                                             "tpu_node_name": "cmle-training-1234-tpu"})}
    assert google_cloud.tpu_target(ai_platform) == {"tpu": ["cmle-training-1234-tpu"], "zone": "us-central1-b",
                                                "project": "my-project", "job_name": "worker"}
    assert google_cloud.tpu_target({"TPU_NAME": "grpc://10.2.3.4:8470"}) == {"tpu": "grpc://10.2.3.4:8470"}
    assert google_cloud.tpu_target({"KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS": "grpc://10.0.0.2:8470"}) == {
        "tpu": "grpc://10.0.0.2:8470"}
    assert google_cloud.tpu_target({"TPU_ACCELERATOR_TYPE": "v5litepod-8"}) == {"tpu": "local"}  # Vertex TPU VM
    assert google_cloud.tpu_target({"TF_CONFIG": "{}", "CLOUD_ML_JOB_ID": "j"}) is None
    with pytest.raises(UserInputError, match="TPU_CONFIG"):
        google_cloud.tpu_target({"TPU_CONFIG": "{not json"})


def test_chief_detection_in_both_platforms_naming():
    def with_tf_config(cluster, task):
        return google_cloud.placement({"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}).is_chief

    assert with_tf_config({"master": ["a:1"], "worker": ["b:1"]}, {"type": "master", "index": 0})
    assert with_tf_config({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "chief", "index": 0})
    assert not with_tf_config({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "worker", "index": 0})
    assert with_tf_config({"workerpool0": ["a:1"], "worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0})
    assert not with_tf_config({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1})
    assert not with_tf_config({"chief": ["a:1"], "evaluator": ["c:1"]}, {"type": "evaluator", "index": 0})


# -- every platform adapter, from its variables or files to the config it produces (no training) ---------------

def test_an_ai_platform_trial_on_a_cluster_becomes_a_placement_and_the_config_carries_it(digits, monkeypatch):
    """AI Platform's variables for worker 1 of trial 4 of a tuning job on a CUSTOM tier cluster."""
    from algorithms.runtime.job_layout import JobLayout

    env = {"TF_CONFIG": json.dumps({"cluster": {"master": ["m:2222"], "worker": ["w0:2222", "w1:2222"]},
                                    "task": {"type": "worker", "index": 1, "trial": "4"}, "environment": "cloud",
                                    "job": {"job_name": "sweep"}}),
           "CLOUD_ML_JOB_ID": "sweep_20261207"}
    placement = google_cloud.placement(env)
    assert placement.cluster["cluster"] == {"chief": ["m:2222"], "worker": ["w0:2222", "w1:2222"]}
    assert placement.cluster["task"] == {"type": "worker", "index": 1, "trial": "4"}
    assert (placement.worker_count, placement.is_chief, placement.trial_id, placement.job_id) == (
        3, False, "4", "sweep_20261207")
    assert placement.tpu is None and placement.fixed_layout is None and placement.default_layout is None
    layout = JobLayout.create("gs://b/job", placement)
    assert (layout.model_dir, layout.checkpoint_dir, layout.tensorboard_dir) == (
        "gs://b/job/model/trial_4", "gs://b/job/checkpoints/trial_4", "gs://b/job/logs/trial_4")
    config = registry.parse_job_config([f"--training_data_path={digits['train']}", "--job-dir=gs://b/job",
                                        "--num_classes=10", "--max_steps=1"], placement=placement)
    assert config.placement == placement
    # The cluster TensorFlow's MultiWorkerMirroredStrategy reads, with its names (setenv: undone after the test).
    monkeypatch.setenv("TF_CONFIG", "")
    google_cloud.publish_cluster(placement.cluster)
    assert json.loads(os.environ["TF_CONFIG"])["cluster"]["chief"] == ["m:2222"]


def test_vertex_ai_directories_trial_and_tensorboard_become_the_layout():
    from algorithms.runtime.job_layout import JobLayout

    env = {"AIP_MODEL_DIR": "gs://b/out/model/", "AIP_CHECKPOINT_DIR": "gs://b/out/checkpoints/",
           "AIP_TENSORBOARD_LOG_DIR": "gs://b/tb/", "CLOUD_ML_TRIAL_ID": "2"}
    placement = google_cloud.placement(env)
    assert placement.trial_id == "2" and placement.is_chief and placement.cluster == {}
    assert JobLayout.create(None, placement) == JobLayout(model_dir="gs://b/out/model",
                                                          checkpoint_dir="gs://b/out/checkpoints",
                                                          report_dir="gs://b/out/report", tensorboard_dir="gs://b/tb")
    # With --job-dir too: the job dir's per-trial folders, and Vertex AI's TensorBoard still gets the events.
    layout = JobLayout.create("gs://b/job", placement)
    assert (layout.model_dir, layout.tensorboard_dir) == ("gs://b/job/model/trial_2", "gs://b/tb")
    assert google_cloud.placement({}) == google_cloud.placement({"TF_CONFIG": " "})  # started by hand: nothing
    with pytest.raises(UserInputError, match="--job-dir is required"):
        JobLayout.create(None, google_cloud.placement({}))


def test_a_trials_environment_has_its_id_and_metric_file_and_not_the_tuners_cluster():
    env = google_cloud.trial_environment({"TF_CONFIG": "{}", "PATH": "/bin", "CLOUD_ML_TRIAL_ID": "9"}, 3, "/t/m")
    assert env == {"PATH": "/bin", "CLOUD_ML_TRIAL_ID": "3", "CLOUD_ML_HP_METRIC_FILE": "/t/m"}
    assert google_cloud.placement(env).trial_id == "3"


def test_sagemakers_files_become_the_command_line_fixed_directories_and_cluster(tmp_path, monkeypatch):
    import platforms

    root = _sagemaker_root(tmp_path, {"epochs": "2", "batch_size": "\"16\"", "seed": "7"},
                           channels=("training", "validation"))
    (root / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0"}))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(root))
    monkeypatch.setenv("TF_CONFIG", "")  # none given by hand (and the published one is undone after the test)
    assert platforms.failure_file(["train"]) == f"{root}/output/failure"
    assert platforms.failure_file(["--max_steps=3"]) is None
    job = platforms.job_from(["train", "--log_every_steps=5"], set(registry.new_flag_values()))
    assert job.argv == ["--train_batch_size=16", "--epochs=2", "--seed=7",
                        f"--training_data_path={root}/input/data/training",
                        f"--validation_data_path={root}/input/data/validation", "--log_every_steps=5"]
    layout = job.placement.fixed_layout
    assert (layout.model_dir, layout.checkpoint_dir, layout.report_dir) == (
        f"{root}/model/1", f"{root}/checkpoints", f"{root}/output/data")
    assert job.placement.cluster == {"cluster": {"worker": ["algo-1:2222", "algo-2:2222"]},
                                     "task": {"type": "worker", "index": 0}}
    assert job.placement.is_chief and json.loads(os.environ["TF_CONFIG"]) == job.placement.cluster
    # The directories stay SageMaker's whatever --job-dir says; the seed reaches the CPU kernels' choice.
    from algorithms.runtime import cpu_kernels
    from algorithms.runtime.job_layout import JobLayout

    assert JobLayout.create("/elsewhere", job.placement) == layout
    assert not cpu_kernels.onednn_wanted(["train"], sagemaker.hyperparameters_of(["train"]))


def test_the_resnet_main_command_line_becomes_our_flags(digits):
    data_dir = os.path.dirname(digits["train"])
    config = registry.parse_job_config([
        f"--data_dir={data_dir}", "--model_dir=/tmp/out", "--resnet_depth=34", "--train_batch_size=64",
        "--train_steps=100", "--steps_per_eval=25", "--num_label_classes=10", "--base_learning_rate=0.2",
        "--momentum=0.8", "--tpu=my-tpu", "--iterations_per_loop=100"])
    assert (config.training_data_path, config.validation_data_path) == (f"{data_dir}/train-*",
                                                                       f"{data_dir}/validation-*")
    assert (config.job_dir, config.max_steps, config.train_steps_per_eval, config.num_classes) == (
        "/tmp/out", 100, 25, 10)
    assert config.task_params.model_type == "resnet-34"
    assert config.schedule.initial_learning_rate == pytest.approx(0.2 * 64 / 256)
    assert config.optimizer.keras_arguments["momentum"] == pytest.approx(0.8)
