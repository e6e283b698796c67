"""The typed configuration every part of the runtime receives (no FLAGS lookups below entrypoint)."""

import dataclasses
from typing import Any

from algorithms.runtime.placement import Placement


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Warm-up followed by one decay shape; all steps are global training steps."""

    decay_type: str  # cosine | exponential | stepwise | constant
    initial_learning_rate: float
    warmup_learning_rate: float
    warmup_steps: int
    decay_steps: int  # cosine: length of the decay; exponential: steps per decay_rate factor
    exponential_decay_rate: float
    stepwise_boundaries: tuple = ()
    stepwise_levels: tuple = ()


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    optimizer_type: str  # momentum | adam | rmsprop | adadelta | adagrad
    keras_arguments: dict  # already mapped from the TF1 names users pass in optimizer_arguments


@dataclasses.dataclass(frozen=True)
class TrainingDefaults:
    """What an algorithm's upstream trainer used where the built-in's docs are silent; flags override each."""

    decay_type: str = "cosine"
    # Peak learning rate per 256 images, scaled by the batch size; optimizers missing here use a fixed rate.
    learning_rate_per_256: dict = dataclasses.field(default_factory=lambda: {"momentum": 0.1, "rmsprop": 0.016})
    fixed_learning_rate: dict = dataclasses.field(
        default_factory=lambda: {"adam": 0.001, "adadelta": 1.0, "adagrad": 0.01})
    warmup_learning_rate_fraction: float = 0.0  # of the peak rate
    # Stepwise boundaries as fractions of max_steps, and the levels as factors of the peak rate.
    stepwise_step_fractions: tuple = ()
    stepwise_level_factors: tuple = ()
    gradient_clip_norm: float | None = None
    # The decay of the weights' moving average (0 = off): see --moving_average_decay.
    moving_average_decay: float = 0.9999


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """One training job: data, output, schedule and the task's own parameters."""

    task: str
    training_data_path: str
    validation_data_path: str
    job_dir: str | None
    num_classes: int
    max_steps: int
    train_batch_size: int
    eval_batch_size: int
    num_eval_images: int
    train_steps_per_eval: int
    log_every_steps: int
    weight_decay: float
    pretrained_checkpoint_path: str | None
    max_bad_image_fraction: float
    max_image_pixels: int
    seed: int | None  # --seed; None: the runtime uses the job's recorded seed or draws one (reproducibility.py)
    deterministic_ops: str  # auto | true | false
    distribution_strategy: str
    mixed_precision: str
    labels_file: str | None
    early_stopping_patience: int
    schedule: ScheduleConfig
    optimizer: OptimizerConfig
    task_params: Any
    moving_average_decay: float = 0.0  # 0: evaluate and export the trained weights themselves
    # What --training_data_path held when routing had to look (dataloaders.sources.TrainingData), so the
    # task's checks do not read it again; None when flags alone chose the task.
    training_data: Any = None
    # The best model is also copied to <export_dir>/<unix time>/ at the end (resnet_main's --export_dir).
    export_dir: str | None = None
    # Where this process stands in its job, as its platform says (cluster, trial, fixed directories, TPU).
    placement: Placement = dataclasses.field(default_factory=Placement)
