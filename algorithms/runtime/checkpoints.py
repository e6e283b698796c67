"""Checkpoint locations: our own job dirs, checkpoint dirs, checkpoint prefixes and exported SavedModels."""

import tensorflow as tf

from algorithms.runtime.errors import UserInputError
from algorithms.runtime.job_layout import join


def resolve_checkpoint_prefix(path: str) -> str:
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
        raise UserInputError(f"--pretrained_checkpoint_path={path} cannot be read: {error.message.splitlines()[0]}") from None
    raise UserInputError(f"--pretrained_checkpoint_path={path} holds no checkpoint; give a checkpoint prefix "
                         "(…/ckpt-1000), a checkpoint directory, a job dir of this trainer, or an exported model dir")
