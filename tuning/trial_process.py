"""One trial as a process: the normal training job started with its flags, its trial id, its own hypertune file
and log, a GPU of its own when there are several, and SIGTERM when its tuner dies; read back through its
hypertune lines and its log."""

import contextlib
import ctypes
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

from platforms import google_cloud

ENTRYPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "entrypoint.py")


@dataclasses.dataclass
class RunningTrial:
    trial: object  # optuna.Trial
    number: int  # the trial id the job sees; Optuna's number + 1
    values: dict  # flag -> value
    process: subprocess.Popen
    metrics_file: str
    log_file: str
    started: float
    reported_steps: set = dataclasses.field(default_factory=set)
    stop_reason: str | None = None  # "pruned" or "stopped" once the tuner sent SIGTERM
    last_heartbeat: float = 0.0

    def new_values(self, metric: str) -> list[tuple[int, float]]:
        """(step, value) of the metric lines the trial wrote since the last call."""
        found = [(step, value) for step, value in read_metrics(self.metrics_file, metric)
                 if step not in self.reported_steps]
        self.reported_steps.update(step for step, _ in found)
        return found


def start(trial, number: int, values: dict, argv: list[str], trial_dir: str, gpus: list[str],
          resumed: bool) -> RunningTrial:
    """Starts `entrypoint.py ARGV` as trial `number`, its output appended to trial_dir/log.txt. A new trial's
    old hypertune file (from a study started over in the same dir) is removed; a resumed one keeps it."""
    os.makedirs(trial_dir, exist_ok=True)
    metrics_file = os.path.join(trial_dir, "hypertune.metrics")
    if not resumed and os.path.exists(metrics_file):
        os.remove(metrics_file)
    env = google_cloud.trial_environment(dict(os.environ), number, metrics_file)
    if len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[(number - 1) % len(gpus)]
    log_file = os.path.join(trial_dir, "log.txt")
    with open(log_file, "a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} trial {number}: {json.dumps(values)}\n")
        log.flush()
        process = subprocess.Popen([sys.executable, ENTRYPOINT, *argv], stdout=log, stderr=subprocess.STDOUT,
                                   env=env, preexec_fn=_die_with_parent, start_new_session=True)
    return RunningTrial(trial, number, values, process, metrics_file, log_file, time.time())


def stop(running: list[RunningTrial], wait_seconds: float) -> None:
    """SIGTERM to each (each saves a checkpoint and exits), then up to `wait_seconds` for all of them; a trial
    still running after that is killed."""
    for item in running:
        if item.process.poll() is None:
            item.process.send_signal(signal.SIGTERM)
    deadline = time.time() + wait_seconds
    for item in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            item.process.wait(timeout=max(1.0, deadline - time.time()))
        if item.process.poll() is None:
            item.process.kill()


def read_metrics(path: str, metric: str) -> list[tuple[int, float]]:
    """(global_step, value) of each line of a hypertune file (one JSON object per line, values as strings)."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
            found.append((int(float(record["global_step"])), float(record[metric])))
        except (ValueError, KeyError, TypeError):
            continue  # a line being rewritten, or another metric
    return [(step, value) for step, value in found if math.isfinite(value)]


def last_error(log_file: str) -> str:
    """The trial's last error line (else its last line), for the tuner's one line about a failed trial."""
    try:
        with open(log_file, errors="replace") as handle:
            lines = [line.strip() for line in handle.read().splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith(("ERROR:", "STOPPED:")) or " ERROR " in line]
    return (errors or lines or ["no output"])[-1][:300] + f" (log: {log_file})"


def visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


def _die_with_parent() -> None:
    """In the trial's process: SIGTERM when the tuner dies, however it dies (Linux), so an orphaned trial
    saves and stops instead of running on beside the trial the next tuner starts."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
