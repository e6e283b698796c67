"""One training process per job (per tuning trial): a lock file in the job's checkpoint directory.

Two processes writing the same checkpoints and model (a job submitted twice, a tuner that reran a trial that
was still running, a platform restart while the old VM lingers) would corrupt each other's files. The chief
creates `<checkpoint dir>/job.lock` exclusively (O_EXCL locally; a generation-matched create on gs://, which
GCS makes atomic), keeps it fresh with a heartbeat, and deletes it at the end. A second process fails at once
with a line naming the first.

A holder killed with no chance to clean up (kill -9, a lost VM whose job the platform restarts elsewhere)
must not block the rerun, so a lock is taken over at once when it names a process on this host that no longer
exists, and otherwise when no heartbeat arrives for STALE_SECONDS: a process that finds a fresher lock
watches it until then, and fails as soon as a heartbeat shows the holder alive (within HEARTBEAT_SECONDS).
The heartbeat runs in a thread, so a long evaluation does not make a live job look stale.
"""

import json
import os
import socket
import threading
import time
import uuid

from absl import logging

from core.errors import UserInputError
from core.paths import join

LOCK_FILE = "job.lock"
HEARTBEAT_SECONDS = 30
STALE_SECONDS = 90  # three missed heartbeats
WATCH_POLL_SECONDS = 5


class _LocalFile:
    def __init__(self, path: str):
        self.path = path

    def create(self, text: str) -> bool:
        """Creates the file with `text` unless it exists; True when this call created it."""
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        return True

    def read(self) -> tuple[str, float, object] | None:
        """(text, seconds since the last write, version) or None when there is no lock."""
        try:
            with open(self.path) as handle:
                text = handle.read()
            return text, time.time() - os.path.getmtime(self.path), text
        except FileNotFoundError:
            return None

    def replace(self, text: str, version) -> bool:
        """Rewrites the lock if it still holds `version` (the text read); True when it did."""
        current = self.read()
        if current is None or current[2] != version:
            return False
        temporary = f"{self.path}.{uuid.uuid4().hex}"
        with open(temporary, "w") as handle:
            handle.write(text)
        os.replace(temporary, self.path)
        return True

    def delete(self, version) -> None:
        current = self.read()
        if current is not None and current[2] == version:
            os.remove(self.path)


class _GcsObject:
    """The same operations on a gs:// object, made atomic by GCS generation preconditions."""

    def __init__(self, path: str):
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage

        bucket, _, name = path[len("gs://"):].partition("/")
        self.path = path
        try:
            client = storage.Client()
        except DefaultCredentialsError as error:
            raise UserInputError(f"cannot lock {path}: no Google Cloud credentials were found ({error}); run "
                                 "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS, as "
                                 "for any gs:// job dir") from None
        self.blob = client.bucket(bucket).blob(name)

    def create(self, text: str) -> bool:
        from google.api_core import exceptions

        try:
            self.blob.upload_from_string(text, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True

    def read(self):
        from google.api_core import exceptions

        try:
            self.blob.reload()  # generation and update time (a download may reset them)
            generation, updated = self.blob.generation, self.blob.updated
            text = self.blob.download_as_text(if_generation_match=generation)
        except (exceptions.NotFound, exceptions.PreconditionFailed):  # gone, or replaced while reading
            return None
        return text, time.time() - updated.timestamp() if updated else 0.0, generation

    def replace(self, text: str, version) -> bool:
        from google.api_core import exceptions

        try:
            self.blob.upload_from_string(text, if_generation_match=version)
        except exceptions.PreconditionFailed:
            return False
        return True

    def delete(self, version) -> None:
        from google.api_core import exceptions

        try:
            self.blob.delete(if_generation_match=version)
        except (exceptions.PreconditionFailed, exceptions.NotFound):
            pass


def _describe(owner: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(owner.get("started", 0)))
    return f"process {owner.get('pid', '?')} on host {owner.get('host', '?')}, started {started}"


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_exists(pid: int, started: str | None = None) -> bool:
    """Whether the process that wrote a lock still runs: its pid exists and, where known, started when it did
    (a restarted container reuses pids, pid 1 above all)."""
    if pid == os.getpid():
        return False  # an earlier process of this host had our pid: it is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    current = _process_start(pid)
    return started is None or current is None or current == started


class JobLock:
    """Held by the chief from before it restores a checkpoint until the job ends (any way but kill -9)."""

    def __init__(self, directory: str, trial: str | None):
        self.path = join(directory, LOCK_FILE)
        self.trial = trial
        self._file = _GcsObject(self.path) if self.path.startswith("gs://") else _LocalFile(self.path)
        self._owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                       "process_start": _process_start(os.getpid()), "token": uuid.uuid4().hex}
        self._version = None
        self._stop = threading.Event()
        self._thread = None
        self.lost = False  # another process took the lock over (this one looked dead to it)

    def _text(self) -> str:
        return json.dumps({**self._owner, "heartbeat": time.time()})

    def _stale_reason(self, owner: dict, age: float, version) -> str | None:
        """Why the lock's holder is gone, or None when it is alive (then this raises nothing, the caller does)."""
        if owner.get("host") == self._owner["host"] and isinstance(owner.get("pid"), int):
            alive = _process_exists(owner["pid"], owner.get("process_start"))
            return None if alive else f"{_describe(owner)} no longer exists"
        # Another host: alive if a heartbeat arrives before the lock is STALE_SECONDS old.
        if age <= STALE_SECONDS:
            logging.info("job lock %s is held by %s (heartbeat %.0f s ago): watching it for up to %.0f s",
                         self.path, _describe(owner), age, STALE_SECONDS - age)
        deadline = time.monotonic() + max(0.0, STALE_SECONDS - age)
        while time.monotonic() < deadline:
            time.sleep(min(WATCH_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            current = self._file.read()
            if current is None or current[2] != version:
                return None  # a heartbeat (or a release): someone is alive and active, do not take over
        return f"{_describe(owner)} has not written its heartbeat for over {STALE_SECONDS} s"

    def acquire(self) -> None:
        what = f"trial {self.trial}" if self.trial else "this job"
        for _ in range(3):  # a lock released or taken over between our read and our write: look again
            if self._file.create(self._text()):
                break
            current = self._file.read()
            if current is None:
                continue
            text, age, version = current
            try:
                owner = json.loads(text)
            except json.JSONDecodeError:
                owner = {}
            reason = self._stale_reason(owner, age, version) if owner else "the lock file is unreadable"
            if reason is None:
                current = self._file.read()
                if current is None:
                    continue  # released while we watched: take it
                age = current[1]
                raise UserInputError(
                    f"{what} is already being trained into this job dir by {_describe(owner)} (lock {self.path}, "
                    f"heartbeat {age:.0f} s ago); wait for it to finish or stop it. If that process is gone, "
                    f"its lock is taken over {STALE_SECONDS} s after its last heartbeat, or delete {self.path}")
            if self._file.replace(self._text(), version):
                logging.warning("took over the job lock %s: %s", self.path, reason)
                break
        else:
            raise UserInputError(f"cannot take the job lock {self.path}: other processes keep changing it")
        current = self._file.read()
        self._version = current[2] if current else None
        self._thread = threading.Thread(target=self._heartbeat, name="job-lock-heartbeat", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                if not self._file.replace(self._text(), self._version):
                    self.lost = True
                    logging.error("the job lock %s was taken over by another process", self.path)
                    return
                current = self._file.read()
                self._version = current[2] if current else self._version
            except Exception as error:  # a flaky bucket: try again at the next beat, the lock stays ours
                logging.warning("could not refresh the job lock %s: %s", self.path, error)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._version is not None and not self.lost:
            try:
                self._file.delete(self._version)
            except Exception as error:
                logging.warning("could not remove the job lock %s: %s", self.path, error)
