"""Atomic SavedModel export: write beside the target, then swap, so a reader never sees half a model.

Layout while swapping, for a target `<parent>/<name>`:
  <parent>/.<name>.incoming   the new model being written
  <parent>/.<name>.previous   the old model, kept until the new one is in place
If a job dies mid-swap, `recover_interrupted_swap` puts whichever complete model exists back at the target.
(On gs:// a directory rename is a per-object copy, so there the swap is ordered, not atomic: the target only
ever holds a complete model or nothing.)
"""

import tensorflow as tf
import yaml
from absl import logging

SAVED_MODEL_FILE = "saved_model.pb"
DEPLOYMENT_CONFIG_FILE = "deployment_config.yaml"


def _sibling(target: str, tag: str) -> str:
    parent, _, name = target.rstrip("/").rpartition("/")
    return f"{parent}/.{name}.{tag}"


def _is_complete(path: str) -> bool:
    return tf.io.gfile.exists(f"{path}/{SAVED_MODEL_FILE}") and tf.io.gfile.exists(f"{path}/{DEPLOYMENT_CONFIG_FILE}")


def recover_interrupted_swap(target: str) -> None:
    incoming, previous = _sibling(target, "incoming"), _sibling(target, "previous")
    if not tf.io.gfile.exists(target):
        for candidate in (incoming, previous):
            if tf.io.gfile.exists(candidate) and _is_complete(candidate):
                tf.io.gfile.rename(candidate, target)
                logging.info("restored %s from an interrupted export (%s)", target, candidate)
                break
    for leftover in (incoming, previous):
        if tf.io.gfile.exists(leftover):
            tf.io.gfile.rmtree(leftover)


def deployment_config(model_dir: str, labels: dict) -> dict:
    """The file `gcloud ai-platform versions create --config` reads, as the built-ins wrote it."""
    return {
        "deploymentUri": model_dir,
        "framework": "TENSORFLOW",
        # The newest AI Platform Prediction runtime; the SavedModel itself only needs TensorFlow >= 2.11 ops.
        "runtimeVersion": "2.11",
        "pythonVersion": "3.7",
        "labels": {str(k): str(v).lower() for k, v in labels.items()},
    }


def export_saved_model(module: tf.Module, target: str, labels: dict, extra_files: dict | None = None) -> None:
    """Saves `module` with its `serving_signatures()` to `target`, atomically replacing any model already there."""
    recover_interrupted_swap(target)
    incoming, previous = _sibling(target, "incoming"), _sibling(target, "previous")
    tf.io.gfile.makedirs(incoming.rpartition("/")[0])
    tf.saved_model.save(module, incoming, signatures=module.serving_signatures(),
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    files = {DEPLOYMENT_CONFIG_FILE: yaml.safe_dump(deployment_config(target, labels), sort_keys=False)}
    files.update(extra_files or {})
    for name, text in files.items():
        with tf.io.gfile.GFile(f"{incoming}/{name}", "w") as handle:
            handle.write(text)
    if tf.io.gfile.exists(target):
        tf.io.gfile.rename(target, previous)
    tf.io.gfile.rename(incoming, target)
    if tf.io.gfile.exists(previous):
        tf.io.gfile.rmtree(previous)
