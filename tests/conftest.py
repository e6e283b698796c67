"""Shared fixtures: a real-image dataset (scikit-learn digit scans) and one real training job on it."""

import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A small real config that learns digits well above chance in ~25 s on 2 CPU cores.
FAST_FLAGS = ["--model_type=resnet-18", "--image_size=32", "--train_batch_size=32", "--optimizer_type=adam",
              "--initial_learning_rate=0.002", "--warmup_steps=10", "--seed=1"]


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    from data.sample_data import build_digits

    return build_digits(str(tmp_path_factory.mktemp("digits")), image_size=32)


@pytest.fixture(scope="session")
def digit_detection(tmp_path_factory):
    """Real digit scans pasted at known boxes onto real photos: 128 px, 3 classes."""
    from data.sample_data import build_digit_detection

    return build_digit_detection(str(tmp_path_factory.mktemp("digit_detection")), image_size=128, num_train=480,
                                 num_validation=60)


def refusing_address() -> str:
    """host:port of a local port nothing listens on: a connection there is refused at once, online or not."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def run_entrypoint(args, env_extra=None, timeout=300):
    """Runs `python entrypoint.py ARGS` as users do; returns the CompletedProcess (stderr holds the log)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def trained_job(digits, tmp_path_factory):
    """One 150-step job through the real command line, evaluating every 50 steps."""
    root = tmp_path_factory.mktemp("job")
    job_dir, metrics_file = str(root / "job"), str(root / "hypertune" / "output.metrics")
    args = [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            f"--job-dir={job_dir}", "--num_classes=10", "--max_steps=150", "--train_steps_per_eval=50",
            "--log_every_steps=50", *FAST_FLAGS]
    result = run_entrypoint(args, {"CLOUD_ML_HP_METRIC_FILE": metrics_file})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(metrics_file) as handle:
        reports = [json.loads(line) for line in handle if line.strip()]
    return {"job_dir": job_dir, "model_dir": os.path.join(job_dir, "model"), "log": result.stderr,
            "reports": reports, "args": args}
