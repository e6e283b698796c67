"""SIGTERM and SIGINT end a job cleanly: the loop finishes its current chunk of steps, saves a checkpoint of
that step and leaves with 128 + the signal number, so the rerun of the same command resumes there.

AI Platform and Vertex AI send SIGTERM when they preempt or cancel a job and kill it 30 s later; spot VMs,
`docker stop` and Kubernetes do the same (Docker waits 10 s by default: `docker stop -t 30`). The loop keeps
each chunk of steps short (CHUNK_SECONDS) so that the save starts well inside that grace period.
"""

import signal
import threading

from absl import logging

CHUNK_SECONDS = 5.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Raised by the training loop after the checkpoint of `step` was saved on a stop signal."""

    def __init__(self, signal_number: int, step: int, checkpoint: str):
        self.signal_number, self.step, self.checkpoint = signal_number, step, checkpoint
        name = signal.Signals(signal_number).name
        super().__init__(f"stopped by {name} at step {step}; checkpoint {checkpoint} saved. Run the same command "
                         "again to resume from it")

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number  # what a process killed by the signal reports: platforms retry it


class StopSignals:
    """Records the first SIGTERM/SIGINT instead of dying; a second one ends the process at once (as a user
    pressing Ctrl-C twice expects). Installs its handlers only in the main thread, where Python allows it."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        return False

    def _handle(self, number, frame):
        if self.received is not None:
            signal.signal(number, signal.SIG_DFL)
            signal.raise_signal(number)
            return
        self.received = number
        logging.warning("received %s: finishing the current steps, then saving a checkpoint and stopping",
                        signal.Signals(number).name)
