"""--seed: the same command gives the same model, bit for bit; a run stopped by SIGTERM and resumed ends where
an uninterrupted one does; a run without --seed draws one, logs it and records it."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from algorithms.runtime import reproducibility
from core.seeds import derive_seed
from tests.conftest import FAST_FLAGS, REPO, run_entrypoint

CLASSIFICATION_STEPS = 40
DETECTION_FLAGS = ["--resnet_depth=18", "--image_size=128,128", "--train_batch_size=8", "--optimizer_type=adam",
                   "--initial_learning_rate=0.001", "--warmup_steps=5", "--aug_scale_min=0.8", "--aug_scale_max=1.2",
                   "--auto_augmentation=true", "--max_steps=6", "--train_steps_per_eval=3", "--num_eval_images=8",
                   "--seed=3"]


def _classification_args(digits, job_dir, *extra):
    return [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            f"--job-dir={job_dir}", "--num_classes=10", f"--max_steps={CLASSIFICATION_STEPS}",
            "--train_steps_per_eval=20", "--log_every_steps=10", *FAST_FLAGS, "--deterministic_ops=auto",
            "--dropout_rate=0.2", *extra]


def _run(args, metrics_file):
    result = run_entrypoint(args, {"CLOUD_ML_HP_METRIC_FILE": str(metrics_file)}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _hypertune_lines(metrics_file) -> list[dict]:
    """The hypertune reports without their wall-clock timestamps."""
    lines = [json.loads(line) for line in open(metrics_file).read().splitlines() if line.strip()]
    return [{key: value for key, value in line.items() if key != "timestamp"} for line in lines]


def _exported_variables(model_dir) -> dict:
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "variables", "variables"))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map() if "VARIABLE_VALUE" in key}


def _assert_same_model(first_dir, second_dir):
    first, second = _exported_variables(first_dir), _exported_variables(second_dir)
    assert first.keys() == second.keys() and len(first) > 50
    differing = [key for key in first if not np.array_equal(first[key], second[key])]
    assert not differing, f"{len(differing)} of {len(first)} exported variables differ, e.g. {differing[:3]}"


@pytest.fixture(scope="module")
def seeded_classification(digits, tmp_path_factory):
    """One seeded 40-step job (dropout on, so its seed generator counts too), evaluated at steps 20 and 40."""
    root = tmp_path_factory.mktemp("seeded")
    result = _run(_classification_args(digits, root / "job"), root / "job.metrics")
    return {"root": root, "log": result.stderr, "reports": _hypertune_lines(root / "job.metrics"),
            "model_dir": str(root / "job" / "model")}


def test_two_seeded_classification_runs_give_the_same_model(digits, seeded_classification, tmp_path):
    _run(_classification_args(digits, tmp_path / "again"), tmp_path / "again.metrics")
    reports = seeded_classification["reports"]
    assert [line["global_step"] for line in reports] == ["20", "40"]
    assert _hypertune_lines(tmp_path / "again.metrics") == reports
    _assert_same_model(seeded_classification["model_dir"], tmp_path / "again" / "model")
    assert "seed 1 (from --seed), op determinism on, TensorFlow's own CPU kernels" in seeded_classification["log"]
    assert json.load(open(tmp_path / "again" / "checkpoints" / "seed.json")) == {"seed": 1, "deterministic_ops": True}


def test_a_seeded_run_stopped_by_sigterm_and_resumed_ends_as_an_uninterrupted_one(digits, seeded_classification,
                                                                                   tmp_path):
    job_dir, metrics = tmp_path / "stopped", tmp_path / "stopped.metrics"
    args = [sys.executable, os.path.join(REPO, "entrypoint.py"), *_classification_args(digits, job_dir)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "CLOUD_ML_HP_METRIC_FILE": str(metrics)})
    # Stopped between evaluations: after the first one's report, a few steps later.
    deadline = time.time() + 300
    while not metrics.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    time.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    first_log = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + signal.SIGTERM, first_log[-3000:]
    stopped_at = int(re.search(r"stopped by SIGTERM at step (\d+)", first_log).group(1))
    assert 20 <= stopped_at < CLASSIFICATION_STEPS, f"stopped at step {stopped_at}: the test wants it mid-run"

    result = _run(_classification_args(digits, job_dir), metrics)
    batch = 32  # FAST_FLAGS' train_batch_size
    assert (f"resuming the training stream after the {stopped_at * batch} records of steps 0..{stopped_at - 1}"
            in result.stderr)
    # Both runs' reports together are the uninterrupted run's, and so is the final model, bit for bit.
    assert _hypertune_lines(metrics)[-1] == seeded_classification["reports"][-1]
    _assert_same_model(seeded_classification["model_dir"], job_dir / "model")


def test_two_seeded_detection_runs_give_the_same_model(digit_detection, tmp_path):
    """RetinaNet with AutoAugment: its heads are shared by every pyramid level, whose gradients must add up in a
    fixed order (one inter-op thread), and every augmentation draw is stateless."""
    runs = []
    for name in ("first", "second"):
        args = [f"--training_data_path={digit_detection['train']}",
                f"--validation_data_path={digit_detection['validation']}", f"--job-dir={tmp_path / name}",
                f"--num_classes={digit_detection['num_classes']}", *DETECTION_FLAGS]
        _run(args, tmp_path / f"{name}.metrics")
        runs.append(_hypertune_lines(tmp_path / f"{name}.metrics"))
    assert [line["global_step"] for line in runs[0]] == ["3", "6"] and runs[0] == runs[1]
    _assert_same_model(tmp_path / "first" / "model", tmp_path / "second" / "model")


def test_a_run_without_seed_draws_one_logs_and_records_it(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoints")
    drawn = reproducibility.resolve_seed(None, "auto", checkpoint_dir, chief=True)
    assert drawn.source == "drawn" and 1 <= drawn.seed <= 2**31 - 1 and not drawn.deterministic_ops
    assert json.load(open(os.path.join(checkpoint_dir, "seed.json")))["seed"] == drawn.seed
    # A rerun of the job (a restart after preemption) keeps the recorded seed; --seed overrides it.
    resumed = reproducibility.resolve_seed(None, "auto", checkpoint_dir, chief=True)
    assert (resumed.seed, resumed.source) == (drawn.seed, "recorded")
    forced = reproducibility.resolve_seed(7, "auto", checkpoint_dir, chief=True)
    assert (forced.seed, forced.source, forced.deterministic_ops) == (7, "--seed", True)
    assert json.load(open(os.path.join(checkpoint_dir, "seed.json")))["seed"] == 7
    assert not reproducibility.resolve_seed(7, "false", checkpoint_dir, chief=True).deterministic_ops


def test_an_unseeded_job_logs_the_seed_it_drew(digits, tmp_path):
    result = run_entrypoint([f"--training_data_path={digits['train']}",
                             f"--validation_data_path={digits['validation']}", f"--job-dir={tmp_path / 'job'}",
                             "--num_classes=10", "--max_steps=1", "--model_type=resnet-18", "--image_size=32",
                             "--train_batch_size=8", "--num_eval_images=8"], {"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    # The user's TF_ENABLE_ONEDNN_OPTS wins over the job's own choice (oneDNN, for a run without --seed).
    seed = int(re.search(r"seed (\d+) \(drawn; rerun with --seed=\1 to repeat this run\), op determinism off, "
                         "TensorFlow's own CPU kernels",
                         result.stderr).group(1))
    assert json.load(open(tmp_path / "job" / "checkpoints" / "seed.json"))["seed"] == seed


def test_trial_seeds_derive_from_the_study_seed_and_the_trial_number():
    seeds = [derive_seed(5, number) for number in range(1, 50)]
    assert len(set(seeds)) == len(seeds) and all(1 <= seed <= 2**31 - 1 for seed in seeds)
    assert seeds == [derive_seed(5, number) for number in range(1, 50)]
    assert derive_seed(6, 1) != seeds[0]


def _stream_origins(files, count, skip=0, pipelines=1, pipeline_id=0, seed=11):
    from dataloaders import record_pipeline

    context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipeline_id)
    dataset = record_pipeline.records(files, training=True, seed=seed, skip_records=skip, input_context=context)
    return [(path.decode(), int(index)) for path, index, *_ in dataset.take(count).as_numpy_iterator()]


@pytest.mark.parametrize("pipelines", [1, 2])
def test_a_resumed_stream_starts_where_the_uninterrupted_one_is_even_epochs_later(digits, pipelines, tmp_path):
    """The training stream skipped by N records is the same stream from its record N on, across epoch
    boundaries (the digits' 1,438 training records; two pipelines each read half of them)."""
    from dataloaders import tfrecord_files

    files = tfrecord_files.resolve_files(digits["train"], "training_data_path")
    whole = _stream_origins(files, 3600, pipelines=pipelines, pipeline_id=pipelines - 1)
    epoch = 1438 if pipelines == 1 else 719
    assert sorted(whole[:epoch]) == sorted(set(whole[:epoch])), "an epoch holds each record once"
    assert whole[epoch:2 * epoch] != whole[:epoch], "the next epoch has its own order"
    for skip in (1000, epoch, 2 * epoch + 17):
        assert _stream_origins(files, 300, skip, pipelines, pipelines - 1) == whole[skip:skip + 300], skip
    # A file whose records cannot be counted (damaged framing): the stream is skipped from its start instead.
    broken = tmp_path / "broken.tfrecord"
    broken.write_bytes(open(files[0], "rb").read()[:-7])
    again = [str(broken), *files[1:]]
    assert _stream_origins(again, 100, 1500)[:50] == _stream_origins(again, 1600)[1500:1550]


def test_the_stream_order_is_a_function_of_the_run_seed_alone_seed_0_included(digits):
    """--seed=0 sets TensorFlow's global seed to 0, which once made the epoch shuffles fail to build; and the
    order must not change with the global seed (a worker that drew other weights still reads the same data)."""
    from dataloaders import tfrecord_files

    files = tfrecord_files.resolve_files(digits["train"], "training_data_path")
    orders = {}
    for run_seed, global_seed in ((0, 0), (0, 5), (11, 11), (11, 0)):
        tf.keras.utils.set_random_seed(global_seed)
        orders[run_seed, global_seed] = _stream_origins(files, 40, seed=run_seed)
    assert orders[0, 0] == orders[0, 5] and orders[11, 11] == orders[11, 0] != orders[0, 0]


@pytest.mark.parametrize("argv, onednn", [
    ([], True), (["--seed=3"], False), (["--seed", "3"], False), (["--seed=3", "--deterministic_ops=false"], True),
    (["--deterministic_ops=true"], False), (["--seed=3", "--deterministic_ops", "auto"], False),
    (["predict", "--model_dir=m", "--input=x.jpg"], True), (["flagfile"], False), (["train"], False),
])
def test_seeded_runs_get_tensorflows_own_cpu_kernels_and_others_onednns(argv, onednn, tmp_path, monkeypatch):
    """oneDNN's filter gradients are not repeatable bit for bit: op determinism keeps TensorFlow's own kernels.
    (The tuning tests and the seeded runs here check the kernels each job logs it ran.)"""
    from algorithms.runtime import cpu_kernels
    from platforms import sagemaker

    flag_file = tmp_path / "flags.txt"
    flag_file.write_text("--num_classes=3\n--seed=5\n")
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"seed": "\"7\""}))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    argv = [f"--flagfile={flag_file}"] if argv == ["flagfile"] else argv
    assert cpu_kernels.onednn_wanted(argv, sagemaker.hyperparameters_of(argv)) == onednn
