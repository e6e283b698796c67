"""Object detection as the shared code sees it (algorithms/runtime/task_spec.py)."""

from algorithms.detection import flags
from algorithms.runtime.task_spec import TaskSpec
from core import feature_keys
from core.json_values import json_number


def _make_task(config):
    from algorithms.detection.task import DetectionTask

    return DetectionTask(config)


def format_prediction(row: dict, name, options: dict) -> list:
    """The detections scoring at least `min_score`: [{"box": [ymin, xmin, ymax, xmax] normalized, "label":
    1-based, "name", "score"}]."""
    count = int(row["num_detections"])
    min_score = options.get("min_score", 0.0)
    return [{"box": [json_number(v, 5) for v in box], "label": int(label), "name": name(int(label)),
             "score": json_number(score)}
            for box, label, score in zip(row["detection_boxes"][:count], row["detection_classes"][:count],
                                         row["detection_scores"][:count])
            if not score < min_score]


SPEC = TaskSpec(
    name="detection", title="object detection", metric="AP", maximize=True,
    label_keys=frozenset({feature_keys.OBJECT_LABEL}),
    records=f"detection records (image/object/bbox/..., {feature_keys.OBJECT_LABEL})",
    define_flags=flags.define_flags, read_params=flags.read_params, make_task=_make_task,
    serving_outputs=frozenset({"detection_boxes", "detection_classes", "detection_scores", "num_detections", "key"}),
    serving_image_input="encoded_image", format_prediction=format_prediction, defaults=flags.TRAINING_DEFAULTS,
    only_flags=flags.DETECTION_ONLY_FLAGS, flag_ranges=flags.FLAG_RANGES,
    flag_notes={"num_classes": "1 or more", "image_size": "\"H,W\" (default 640,640)"})
