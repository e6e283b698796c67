"""The classifier's typed parameters, read once from the flags (algorithms/classification/flags.py)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ClassificationParams:
    model_type: str
    image_size: int
    label_smoothing: float
    pretrained_weights: str | None = None
    dropout_rate: float | None = None
    regularizers_l2: float = 0.0
    train_only_top_layer: bool = False
    fine_tune_after_steps: int = 0
    fine_tune_learning_rate: float | None = None
    validation_split_ratio: float = 0.2
    crop_min_area: float = 0.08  # the training crop's smallest share of the image's area
