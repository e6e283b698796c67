"""Atomic SavedModel export: write beside the target, then swap, so a reader never sees half a model.

For a target `<parent>/<name>` the new model is first written to `<parent>/.<name>.incoming`.
- Local/POSIX file systems: the old model is renamed to `.<name>.previous`, the new one renamed into place
  (atomic directory renames), then the old one is deleted.
- gs:// has no directory rename (it is a copy of every object), so there the swap is ordered instead: the old
  model loses its `saved_model.pb` first (a loader sees no model rather than a mixed one), then the new files
  are copied with `saved_model.pb` last, so the target only ever holds a complete model or nothing.
If a job dies mid-swap, `recover_interrupted_swap` puts the complete model back at the target.
"""

import tensorflow as tf
import yaml
from absl import logging

SAVED_MODEL_FILE = "saved_model.pb"
DEPLOYMENT_CONFIG_FILE = "deployment_config.yaml"


def _sibling(target: str, tag: str) -> str:
    parent, _, name = target.rstrip("/").rpartition("/")
    return f"{parent}/.{name}.{tag}"


def _has_atomic_directory_rename(path: str) -> bool:
    return "://" not in path


def _is_complete(path: str) -> bool:
    return tf.io.gfile.exists(f"{path}/{SAVED_MODEL_FILE}") and tf.io.gfile.exists(f"{path}/{DEPLOYMENT_CONFIG_FILE}")


def _copy_tree_marker_last(source: str, target: str) -> None:
    files = [f"{directory.rstrip('/')}/{name}" for directory, _, names in tf.io.gfile.walk(source) for name in names]
    files.sort(key=lambda path: path.endswith(f"/{SAVED_MODEL_FILE}"))  # the marker of a complete model goes last
    for path in files:
        destination = target + path[len(source):]
        tf.io.gfile.makedirs(destination.rpartition("/")[0])
        tf.io.gfile.copy(path, destination, overwrite=True)


def _remove_model(path: str) -> None:
    if tf.io.gfile.exists(f"{path}/{SAVED_MODEL_FILE}"):
        tf.io.gfile.remove(f"{path}/{SAVED_MODEL_FILE}")
    tf.io.gfile.rmtree(path)


def _move_into_place(incoming: str, target: str) -> None:
    if _has_atomic_directory_rename(target):
        previous = _sibling(target, "previous")
        if tf.io.gfile.exists(target):
            tf.io.gfile.rename(target, previous)
        tf.io.gfile.rename(incoming, target)
        if tf.io.gfile.exists(previous):
            tf.io.gfile.rmtree(previous)
        return
    if tf.io.gfile.exists(target):
        _remove_model(target)
    _copy_tree_marker_last(incoming, target)
    tf.io.gfile.rmtree(incoming)


def publish_copy(model_dir: str, parent: str, name: str) -> str:
    """Copies the exported model to `<parent>/<name>` (resnet_main's `<export_dir>/<timestamp>`, which deploy
    scripts pick as the newest folder), complete or not at all."""
    target = f"{parent.rstrip('/')}/{name}"
    incoming = _sibling(target, "incoming")
    if tf.io.gfile.exists(incoming):
        tf.io.gfile.rmtree(incoming)
    _copy_tree_marker_last(model_dir.rstrip("/"), incoming)
    _move_into_place(incoming, target)
    return target


def recover_interrupted_swap(target: str) -> None:
    incoming, previous = _sibling(target, "incoming"), _sibling(target, "previous")
    if not _is_complete(target):
        for candidate in (incoming, previous):
            if tf.io.gfile.exists(candidate) and _is_complete(candidate):
                if tf.io.gfile.exists(target):
                    _remove_model(target)
                _move_into_place(candidate, target)
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
    """Saves `module` with its `serving_signatures()` to `target`, replacing any model already there."""
    recover_interrupted_swap(target)
    incoming = _sibling(target, "incoming")
    tf.io.gfile.makedirs(incoming.rpartition("/")[0])
    tf.saved_model.save(module, incoming, signatures=module.serving_signatures(),
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    files = {DEPLOYMENT_CONFIG_FILE: yaml.safe_dump(deployment_config(target, labels), sort_keys=False)}
    files.update(extra_files or {})
    for name, text in files.items():
        with tf.io.gfile.GFile(f"{incoming}/{name}", "w") as handle:
            handle.write(text)
    _move_into_place(incoming, target)


def exported_step(target: str) -> int | None:
    """The training step of the complete model at `target` (from its deployment config), or None."""
    if not _is_complete(target):
        return None
    try:
        with tf.io.gfile.GFile(f"{target}/{DEPLOYMENT_CONFIG_FILE}") as handle:
            return int((yaml.safe_load(handle) or {}).get("labels", {}).get("global_step"))
    except (tf.errors.OpError, yaml.YAMLError, TypeError, ValueError):
        return None


def remove_unfinished_export(target: str) -> None:
    """Drops the half-written `.incoming` copy of an export that failed (e.g. the disk filled up)."""
    incoming = _sibling(target, "incoming")
    if tf.io.gfile.exists(incoming):
        tf.io.gfile.rmtree(incoming)
