"""Kill and resume, tuning-trial layout, and the evaluate-only path once max_steps is reached."""

import json
import os
import signal
import subprocess
import sys
import time

import tensorflow as tf

from tests.conftest import FAST_FLAGS, REPO


def _job_args(digits, job_dir, max_steps, steps_per_eval, extra=()):
    return [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            f"--job-dir={job_dir}", "--num_classes=10", f"--max_steps={max_steps}",
            f"--train_steps_per_eval={steps_per_eval}", "--log_every_steps=10", *FAST_FLAGS, *extra]


def test_killed_job_resumes_from_its_checkpoint(digits, tmp_path):
    job_dir = tmp_path / "job"
    args = [sys.executable, os.path.join(REPO, "entrypoint.py"), *_job_args(digits, job_dir, 400, 20)]
    env = {**os.environ, "CLOUD_ML_HP_METRIC_FILE": str(tmp_path / "first.metrics")}
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    # The first evaluation is over (checkpoint, export, hypertune report, in that order) once its report exists.
    first_report = tmp_path / "first.metrics"
    deadline = time.time() + 300
    while not first_report.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first_log = process.stderr.read()
    saved_step = int(tf.train.latest_checkpoint(str(job_dir / "checkpoints")).rsplit("-", 1)[1])
    assert 20 <= saved_step < 400, first_log[-2000:]
    first_reports = [json.loads(line) for line in open(tmp_path / "first.metrics").read().splitlines()]
    first_best = max(float(r["top_1_accuracy"]) for r in first_reports if int(r["global_step"]) <= saved_step)

    # The same command again, now with a shorter horizon so the test stays quick.
    args = _job_args(digits, job_dir, saved_step + 20, 20)
    env = {**os.environ, "CLOUD_ML_HP_METRIC_FILE": str(tmp_path / "second.metrics")}
    result = subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), *args], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {job_dir}/checkpoints/ckpt-{saved_step} at step {saved_step}" in result.stderr
    assert f"(best top_1_accuracy={first_best:.4f} at step" in result.stderr  # the best score survived the kill
    assert f"step {saved_step + 1}/{saved_step + 20}" in result.stderr  # no finished step is redone
    reports = [json.loads(line) for line in open(tmp_path / "second.metrics").read().splitlines()]
    assert [r["global_step"] for r in reports] == [str(saved_step + 20)]
    assert os.path.exists(job_dir / "model" / "saved_model.pb")


def test_trial_id_from_tf_config_selects_the_trial_directories(digits, tmp_path, monkeypatch):
    from algorithms import registry

    monkeypatch.setenv("TF_CONFIG", json.dumps({"task": {"type": "master", "index": 0, "trial": "3"},
                                                 "environment": "cloud"}))
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "trial.metrics"))
    summary = registry.run_job(registry.parse_job_config(_job_args(digits, tmp_path / "job", 2, 2)))
    assert summary.model_dir == f"{tmp_path}/job/model/trial_3"
    assert tf.io.gfile.exists(f"{tmp_path}/job/model/trial_3/saved_model.pb")
    assert tf.train.latest_checkpoint(f"{tmp_path}/job/checkpoints/trial_3").endswith("ckpt-2")
    assert not os.path.exists(tmp_path / "job" / "model" / "saved_model.pb")
    line = json.loads(open(tmp_path / "trial.metrics").read().splitlines()[-1])
    assert line["global_step"] == "2" and "top_1_accuracy" in line


def test_trial_id_from_cloud_ml_trial_id(monkeypatch):
    from algorithms.runtime.job_layout import JobLayout
    from platforms import google_cloud

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "7")
    layout = JobLayout.create("gs://bucket/job", google_cloud.placement())
    assert layout.model_dir == "gs://bucket/job/model/trial_7"
    assert layout.checkpoint_dir == "gs://bucket/job/checkpoints/trial_7"


def test_vertex_directories_when_no_job_dir(monkeypatch):
    from algorithms.runtime.job_layout import JobLayout
    from platforms import google_cloud

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("CLOUD_ML_TRIAL_ID", raising=False)
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://bucket/out/model/")
    monkeypatch.setenv("AIP_CHECKPOINT_DIR", "gs://bucket/out/checkpoints/")
    layout = JobLayout.create(None, google_cloud.placement())
    assert (layout.model_dir, layout.checkpoint_dir) == ("gs://bucket/out/model", "gs://bucket/out/checkpoints")


def test_rerun_at_max_steps_only_evaluates(digits, tmp_path, monkeypatch):
    from algorithms import registry

    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "m"))
    args = _job_args(digits, tmp_path / "job", 2, 2)
    registry.run_job(registry.parse_job_config(args))
    summary = registry.run_job(registry.parse_job_config(args))
    assert summary.final_step == 2 and summary.losses == []
    assert summary.last_metrics["eval_images"] == digits["num_validation"]
