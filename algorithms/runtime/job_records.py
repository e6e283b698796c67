"""Choices a job makes once, on its first run, and keeps for every rerun: small JSON files in its checkpoint dir
(local or gs://), so a resumed job goes on exactly as it started even where it could choose differently now
(a drawn seed; anchors fitted to training data that has grown since)."""

import json

import tensorflow as tf
from absl import logging

from core.paths import join


def read_record(directory: str, name: str, what: str) -> dict | None:
    """The JSON object recorded as `name` in `directory`, or None when there is none or it cannot be read (logged,
    naming `what` the caller then decides afresh)."""
    path = join(directory, name)
    try:
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path) as handle:
            values = json.load(handle)
    except (tf.errors.OpError, ValueError) as error:
        logging.warning("could not read the recorded %s %s (%s): it is chosen again", what, path, error)
        return None
    return values if isinstance(values, dict) else None


def write_record(directory: str, name: str, values: dict, what: str) -> None:
    """Records `values` as `name` in `directory` (written whole, then renamed into place); a storage problem is
    logged, not raised: the checkpoint's own write reports it in one line."""
    path = join(directory, name)
    try:
        tf.io.gfile.makedirs(directory)
        with tf.io.gfile.GFile(path + ".tmp", "w") as handle:
            json.dump(values, handle)
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    except tf.errors.OpError as error:
        logging.warning("could not record the %s in %s: %s", what, path, error)
