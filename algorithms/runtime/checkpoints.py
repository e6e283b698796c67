"""Checkpoint locations: our own job dirs, checkpoint dirs, checkpoint prefixes and exported SavedModels."""

import tensorflow as tf

from core.errors import UserInputError
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
