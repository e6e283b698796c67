"""Image classification as the shared code sees it (algorithms/runtime/task_spec.py)."""

import numpy as np

from algorithms.classification import flags
from algorithms.runtime.task_spec import TaskSpec
from core import feature_keys
from core.json_values import json_number


def _make_task(config):
    from algorithms.classification.task import ClassificationTask

    return ClassificationTask(config)


def format_prediction(row: dict, name, options: dict) -> list:
    """The `top_k` most probable classes: [{"class": 0-based index, "label": 1-based, "name", "score"}]."""
    probabilities = row["probabilities"]
    best = np.argsort(-np.nan_to_num(probabilities, nan=-1.0), kind="stable")[:options.get("top_k", 5)]
    return [{"class": int(i), "label": int(i) + 1, "name": name(int(i) + 1), "score": json_number(probabilities[i])}
            for i in best]


SPEC = TaskSpec(
    name="classification", title="image classification", metric="top_1_accuracy", maximize=True,
    label_keys=frozenset({feature_keys.CLASS_LABEL}), records=f"classification records ({feature_keys.CLASS_LABEL})",
    define_flags=flags.define_flags, read_params=flags.read_params, make_task=_make_task,
    serving_outputs=frozenset({"classes", "probabilities", "key"}), serving_image_input="image_bytes",
    format_prediction=format_prediction, flag_ranges=flags.FLAG_RANGES,
    flag_notes={"num_classes": "2 or more",
                "image_size": "N (square; default: the model's native size)"})
