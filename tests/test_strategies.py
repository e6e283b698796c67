"""Distribution: two real worker processes on 127.0.0.1, Mirrored over 2 logical CPUs, TPU/Vertex detection."""

import json
import os
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from algorithms.runtime import strategy
from core.errors import UserInputError
from tests.conftest import FAST_FLAGS, REPO


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _args(digits, job_dir, max_steps=4):
    return [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            f"--job-dir={job_dir}", "--num_classes=10", f"--max_steps={max_steps}", "--train_steps_per_eval=2",
            *FAST_FLAGS]


def test_two_workers_train_one_classifier_and_only_the_chief_exports(digits, tmp_path):
    chief_port, worker_port = _free_ports(2)
    # AI Platform's naming: the primary is `master`.
    cluster = {"master": [f"127.0.0.1:{chief_port}"], "worker": [f"127.0.0.1:{worker_port}"]}
    processes, scratch = {}, tmp_path / "worker-tmp"
    scratch.mkdir()
    for role, task in (("chief", {"type": "master", "index": 0}), ("worker", {"type": "worker", "index": 0})):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": task, "environment": "cloud"}),
               "CLOUD_ML_HP_METRIC_FILE": str(tmp_path / f"{role}.metrics"), "TMPDIR": str(scratch)}
        processes[role] = subprocess.Popen([sys.executable, os.path.join(REPO, "entrypoint.py"),
                                            *_args(digits, tmp_path / "job")],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    logs = {role: process.communicate(timeout=600)[1] for role, process in processes.items()}
    for role, log in logs.items():
        (tmp_path / f"{role}.log").write_text(log)
    for role, process in processes.items():
        assert process.returncode == 0, f"{role}:\n{logs[role][-3000:]}"
    assert "MultiWorkerMirroredStrategy, 2 replica(s) in sync" in logs["chief"]
    assert "exported the best model" in logs["chief"] and "exported the best model" not in logs["worker"]
    assert os.path.exists(tmp_path / "chief.metrics") and not os.path.exists(tmp_path / "worker.metrics")
    # The worker's throwaway checkpoints (one per evaluation, the size of the model) do not outlive the job.
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("worker-checkpoints-")]
    # Every worker evaluates the whole validation set; the metrics count each image once.
    assert f"eval_images={digits['num_validation']}" in logs["chief"]
    model = tf.saved_model.load(str(tmp_path / "job" / "model")).signatures["serving_default"]
    assert model.structured_outputs["probabilities"].shape.as_list() == [None, 10]


def test_mirrored_over_two_logical_cpus_trains_and_exports(digits, tmp_path):
    script = (
        "import sys, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "import entrypoint\n"
        f"sys.exit(entrypoint.main({_args(digits, tmp_path / 'job')!r} + ['--distribution_strategy=mirrored']))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CLOUD_ML_HP_METRIC_FILE": str(tmp_path / "m")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy, 2 replica(s) in sync on CPU" in result.stderr
    assert f"eval_images={digits['num_validation']}" in result.stderr
    assert os.path.exists(tmp_path / "job" / "model" / "saved_model.pb")


def test_tpu_connection_retries_while_the_node_is_provisioned():
    """The resolver is the only stand-in here: no TPU exists on this machine."""
    attempts, sleeps = [], []

    class ProvisioningResolver:
        def __init__(self, **kwargs):
            attempts.append(kwargs)
            if len(attempts) < 3:
                raise ValueError("TPU cmle-training-1234-tpu is not yet ready; state: CREATING")

        def cluster_spec(self):
            return tf.train.ClusterSpec({"worker": ["10.2.3.4:8470"]})

    target = {"tpu": ["cmle-training-1234-tpu"], "zone": "z", "project": "p", "job_name": "worker"}
    resolver = strategy.connect_tpu(target, ProvisioningResolver, attempts=40, delay=10, sleep=sleeps.append)
    assert isinstance(resolver, ProvisioningResolver) and len(attempts) == 3 and sleeps == [10, 10]

    class NeverReady(ProvisioningResolver):
        def __init__(self, **kwargs):
            raise ValueError("not yet ready")

    with pytest.raises(UserInputError, match="did not become ready after 4 attempts: not yet ready"):
        strategy.connect_tpu(target, NeverReady, attempts=4, delay=10, sleep=lambda s: None)
