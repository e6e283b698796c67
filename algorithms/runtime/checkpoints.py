"""Checkpoint locations: our own job dirs, checkpoint dirs, checkpoint prefixes and exported SavedModels."""

import time

import tensorflow as tf
from absl import logging

from core.errors import StorageError, UserInputError
from core.paths import join


def resolve_checkpoint_prefix(path: str, flag: str = "pretrained_checkpoint_path") -> str:
    """Accepts a checkpoint prefix, a directory of checkpoints, a job dir, or an exported SavedModel dir."""
    path = path.rstrip("/")
    try:
        if tf.io.gfile.exists(path + ".index"):
            return path
        if tf.io.gfile.exists(join(path, "saved_model.pb")):
            return join(path, "variables", "variables")  # a SavedModel's variables are a TF2 checkpoint
        for directory in (path, join(path, "checkpoints")):
            latest = tf.train.latest_checkpoint(directory) if tf.io.gfile.isdir(directory) else None
            if latest:
                return latest
    except tf.errors.OpError as error:
        raise UserInputError(f"--{flag}={path} cannot be read: {error.message.splitlines()[0]}") from None
    raise UserInputError(f"--{flag}={path} holds no checkpoint; give a checkpoint prefix "
                         "(…/ckpt-1000), a checkpoint directory, a job dir of this trainer, or an exported model dir")


def restore_matching(variables: list, checkpoint_prefix: str, root: str = "model") -> tuple[list, list]:
    """Loads each of `variables` whose path is in the checkpoint (under `root`) with the same shape.
    Returns (restored paths, paths missing or of another shape)."""
    reader = tf.train.load_checkpoint(checkpoint_prefix)
    shapes = reader.get_variable_to_shape_map()
    restored, skipped = [], []
    for variable in variables:
        key = f"{root}/{_escape(variable.path)}/.ATTRIBUTES/VARIABLE_VALUE"
        if shapes.get(key) == list(variable.shape):
            variable.assign(reader.get_tensor(key))
            restored.append(variable.path)
        else:
            skipped.append(variable.path)
    return restored, skipped


def restore_backbone(variables: list, checkpoint_prefix: str, architecture: str) -> list:
    """Warm starts need the whole backbone: restores it or names what does not match. Returns restored paths.
    (Reached from --pretrained_checkpoint_path and --pretrained_weights alike, so the message names neither.)"""
    restored, missing = restore_matching(variables, checkpoint_prefix)
    if missing:
        raise UserInputError(f"the pretrained checkpoint {checkpoint_prefix} does not hold a backbone matching "
                             f"{architecture} ({len(missing)} of {len(variables)} variables missing or of another "
                             f"shape, e.g. {missing[0]})")
    return restored


def _escape(name: str) -> str:
    """How TensorFlow writes an object name inside a checkpoint key ('.' -> '..', '/' -> '.S')."""
    return name.replace(".", "..").replace("/", ".S")


CHECKPOINT_PREFIX = "ckpt"
UNUSABLE_DIR = "unusable"


def checkpoints_on_disk(directory: str) -> list[str]:
    """Checkpoint prefixes in `directory`, newest (highest step) first, read from the files themselves: the
    `checkpoint` state file may be missing, garbled or point at a checkpoint that was never completed."""
    try:
        index_files = tf.io.gfile.glob(join(directory, f"{CHECKPOINT_PREFIX}-*.index"))
    except tf.errors.OpError:
        return []
    numbered = []
    for path in index_files:
        number = path[:-len(".index")].rsplit("-", 1)[-1]
        if number.isdigit():
            numbered.append((int(number), path[:-len(".index")]))
    return [prefix for _, prefix in sorted(numbered, reverse=True)]


def remove_stale_temporaries(directory: str) -> None:
    """A save killed midway leaves `ckpt-N_temp/`; it is never completed, and a later save of the same step
    would fail on it."""
    for path in tf.io.gfile.glob(join(directory, f"{CHECKPOINT_PREFIX}-*_temp")):
        logging.warning("removing %s, left by a checkpoint save that never finished", path)
        tf.io.gfile.rmtree(path)


def set_aside(prefix: str) -> str:
    """Moves an unusable checkpoint's files into `unusable/` beside it (kept for inspection, out of the way of
    the checkpoint manager); returns where they went."""
    directory, _, name = prefix.rpartition("/")
    target_dir = join(directory, UNUSABLE_DIR)
    tf.io.gfile.makedirs(target_dir)
    for path in tf.io.gfile.glob(f"{prefix}.*"):
        tf.io.gfile.rename(path, join(target_dir, path.rpartition("/")[2]), overwrite=True)
    return join(target_dir, name)


# A read that fails because the storage does (an outage, a timeout, no access) says nothing about the checkpoint:
# it ends the job with every checkpoint where it was, never sets a good one aside as corrupt.
_STORAGE_READ_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                        tf.errors.PermissionDeniedError, tf.errors.UnauthenticatedError)
# The checkpoint reader re-raises every error of its own as a bare OpError with only the text: the GCS client's
# gives itself away by its words ("All 10 retry attempts failed. ... HTTP response code 503").
_STORAGE_READ_WORDS = ("retry attempts failed", "Error executing an HTTP request", "HTTP response code 5")
READ_ATTEMPTS = 3


def _storage_failure(error: Exception, message: str) -> bool:
    return isinstance(error, _STORAGE_READ_ERRORS) or any(words in message for words in _STORAGE_READ_WORDS)


def unreadable_reason(prefix: str) -> str | None:
    """Why the checkpoint at `prefix` cannot be read back whole (a truncated file, a checksum mismatch), or None.
    Every tensor is read, so each one's checksum is verified, before anything is restored into the model: a
    failed restore would leave the model half-restored, with the broken files still referenced. Raises
    StorageError when the storage itself keeps failing (after TensorFlow's own retries, and READ_ATTEMPTS)."""
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            reader = tf.train.load_checkpoint(prefix)
            for key in reader.get_variable_to_shape_map():
                reader.get_tensor(key)
            return None
        except Exception as error:  # noqa: BLE001 - the reader raises OpErrors, IndexError, ValueError... for bad bytes
            message = (getattr(error, "message", None) or str(error) or type(error).__name__).strip()
            text = message.splitlines()[0][:300]
            if not _storage_failure(error, message):
                return text
            if attempt == READ_ATTEMPTS:
                raise StorageError(
                    f"could not read the checkpoint {prefix}, even after retrying: {text}. No checkpoint was "
                    "changed; rerun the same command to resume from it (GCS_RETRY_CONFIG_MAX_RETRIES sets how "
                    "often TensorFlow retries)") from None
            logging.warning("reading the checkpoint %s failed (%s); trying again", prefix, text)
            time.sleep(attempt)
    return None


def restore_newest_usable(checkpoint: tf.train.Checkpoint, directory: str, chief: bool) -> str | None:
    """Restores the newest checkpoint in `directory` that reads back whole; a corrupt or truncated newer one is
    logged with the reason and, once an older one restored, set aside by the chief. Returns the prefix restored,
    or None when there is none. Raises UserInputError when checkpoints exist but none can be read (and moves
    nothing, so the job dir stays as it was)."""
    failures = []
    for prefix in checkpoints_on_disk(directory):
        reason = unreadable_reason(prefix)
        if reason:
            failures.append((prefix, reason))
            logging.warning("checkpoint %s cannot be restored (%s); trying the next older one", prefix, reason)
            continue
        try:
            checkpoint.read(prefix).assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            raise UserInputError(f"checkpoint {prefix} does not fit this job ({str(error).splitlines()[0][:200]}); it "
                                 "was written with other model or optimizer flags: rerun with those, or use another "
                                 "--job-dir") from None
        for failed, _ in failures if chief else ():
            logging.warning("moved the unusable checkpoint %s to %s", failed, set_aside(failed))
        return prefix
    if failures:
        listed = "; ".join(f"{prefix}: {reason}" for prefix, reason in failures)
        raise UserInputError(f"no checkpoint in {directory} can be restored ({listed}); delete {directory} to "
                             "train from step 0, or point --job-dir elsewhere")
    return None
