"""Shared fixtures: a real-image dataset (scikit-learn digit scans) and one real training job on it."""

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A small real config that learns digits well above chance in ~25 s on 2 CPU cores. The seed fixes the data order,
# the augmentation and the initial weights; without op determinism the job runs oneDNN's CPU kernels, 4x faster
# here (algorithms/runtime/cpu_kernels.py). test_reproducibility turns it back on where it compares bits.
FAST_FLAGS = ["--model_type=resnet-18", "--image_size=32", "--train_batch_size=32", "--optimizer_type=adam",
              "--initial_learning_rate=0.002", "--warmup_steps=10", "--seed=1", "--deterministic_ops=false"]


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


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refusing_address() -> str:
    """host:port of a local port nothing listens on: a connection there is refused at once, online or not."""
    return f"127.0.0.1:{free_port()}"


def run_entrypoint(args, env_extra=None, timeout=300):
    """Runs `python entrypoint.py ARGS` as users do; returns the CompletedProcess (stderr holds the log)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, os.path.join(REPO, "entrypoint.py"), *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)


@contextlib.contextmanager
def once_per_run(tmp_path_factory, name: str):
    """The file where a session fixture's result is kept for every pytest-xdist worker of this run, held under a
    lock: the first worker to get here produces it, the others wait and read it (its job dir is only read).
    Without xdist, a file of this session's own. The producer's job dir outlives that worker: xdist hands each
    worker its basetemp, which pytest then leaves for the controller to remove at the end of the run."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent  # this run's folder, above each worker's own
    else:
        shared = tmp_path_factory.getbasetemp()
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield shared / f"{name}.json"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def trained_job(digits, tmp_path_factory):
    """One 150-step job through the real command line, evaluating every 50 steps; trained once per run (both
    test workers read it)."""
    with once_per_run(tmp_path_factory, "trained_job") as kept:
        if not kept.exists():
            kept.write_text(json.dumps(_train_job(digits, tmp_path_factory)))
        return json.loads(kept.read_text())


def _train_job(digits, tmp_path_factory) -> dict:
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


# The longest files first (their summed durations in `make test` on 2 cores), the rest in their own order: with
# whole files per worker (make test runs `--dist loadfile --no-loadscope-reorder`), a long file handed out last
# keeps one worker busy long after the other has finished.
LONGEST_FILES_FIRST = ("test_detection_end_to_end.py", "test_fault_tolerance.py", "test_tuning.py",
                       "test_transfer_learning.py", "test_gcs.py", "test_reproducibility.py",
                       "test_resume_and_trials.py", "test_platforms.py", "test_strategies.py", "test_converters.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order
