"""The contract between the shared runtime and one algorithm (classification, detection, ...).

A task builds its model, datasets, loss, evaluation and serving module; it never writes files or reports
metrics: the runtime does that, once, for every task.
"""

import abc

import keras
import tensorflow as tf

from algorithms.runtime.config import JobConfig
from algorithms.runtime.errors import UserInputError
from data import labels, record_pipeline, tfrecord_files
from data.labels import LABELS_FILE_NAME


class Task(abc.ABC):
    name: str
    metric_name: str  # reported to hypertune and used to pick the best model (higher is better)
    # How eval_step outputs come back: "sum" adds them over replicas and batches (each input pipeline
    # evaluates the whole set, the runtime divides by their number) and hands the sums to eval_metrics;
    # "collect" hands every local replica's per-image outputs (numpy) to eval_collect, for metrics that
    # need all predictions at once (COCO AP).
    eval_outputs = "sum"

    def __init__(self, config: JobConfig):
        self.config = config
        self.class_names: list[str] | None = None  # known in preflight() from --labels_file or labels.txt
        self.train_files: list[str] = []
        self.eval_files: list[str] = []
        # Made in check_data(): tf.Variables must not exist before the distribution strategy does.
        self.train_counters = self.eval_counters = None

    @abc.abstractmethod
    def preflight(self) -> None:
        """Checks flags and data before anything is written (the task's own flags, then check_data());
        raises UserInputError."""

    @abc.abstractmethod
    def check_first_record(self, files: list[str], flag: str) -> None:
        """Raises UserInputError when the first record of `files` is not one this task reads."""

    def check_data(self) -> None:
        """What every task checks of its data: both globs resolve, their first records are this task's,
        num_eval_images fits the validation set; then its counters and class names."""
        c = self.config
        self.train_counters = record_pipeline.RecordCounters("train")
        self.eval_counters = record_pipeline.RecordCounters("eval")
        self.train_files = tfrecord_files.resolve_files(c.training_data_path, "training_data_path")
        self.eval_files = tfrecord_files.resolve_files(c.validation_data_path, "validation_data_path")
        for files, flag in ((self.train_files, "training_data_path"), (self.eval_files, "validation_data_path")):
            self.check_first_record(files, flag)
        if c.num_eval_images:
            available = tfrecord_files.count_records(self.eval_files, c.num_eval_images)
            if available < c.num_eval_images:
                raise UserInputError(
                    f"--num_eval_images={c.num_eval_images} is more than the {available} records in "
                    f"--validation_data_path={c.validation_data_path}; lower it or use 0 for all of them")
        self.class_names = labels.load_class_names(c.labels_file, self.train_files, c.num_classes)

    @abc.abstractmethod
    def build_model(self) -> keras.Model:
        """A new model with built variables."""

    @abc.abstractmethod
    def warm_start(self, model: keras.Model, checkpoint_prefix: str) -> None:
        """Loads pretrained weights from a checkpoint prefix into a freshly built model."""

    def load_pretrained(self, model: keras.Model) -> None:
        """Task-specific pretrained weights for a fresh job (not resumed, no --pretrained_checkpoint_path)."""

    def learning_rate_schedule(self, schedule):
        """The optimizer's schedule; a task with training phases may change it from a phase's first step."""
        return schedule

    def training_phase_steps(self) -> tuple[int, ...]:
        """Steps at which set_training_phase changes what trains (e.g. the backbone unfrozen)."""
        return ()

    def set_training_phase(self, model: keras.Model, step: int) -> bool:
        """Sets which variables train from `step` on; True when that changed (the runtime then retraces)."""
        return False

    @abc.abstractmethod
    def train_dataset(self, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """Endless per-replica batches for training."""

    @abc.abstractmethod
    def eval_dataset(self, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """One pass over the evaluation images, per-replica batches."""

    @abc.abstractmethod
    def compute_loss(self, model: keras.Model, batch) -> tuple[tf.Tensor, tf.Tensor]:
        """(per-example loss [b], regularisation scalar) for one training batch."""

    @abc.abstractmethod
    def eval_step(self, model: keras.Model, batch) -> dict:
        """Sums over one evaluation batch, e.g. {"correct_top_1": ..., "count": ...} (summed across replicas)."""

    @abc.abstractmethod
    def eval_metrics(self, sums: dict) -> dict:
        """Final metrics (floats) from the summed eval_step outputs (empty when eval_outputs is "collect");
        must contain metric_name."""

    def eval_begin(self) -> None:
        """Called before each evaluation pass ("collect" tasks reset what they gathered)."""

    def eval_collect(self, outputs: dict) -> None:
        """One local replica's eval_step outputs as numpy arrays (only when eval_outputs is "collect")."""
        raise NotImplementedError

    @abc.abstractmethod
    def serving_module(self, model: keras.Model) -> tf.Module:
        """A tf.Module whose `serving_signatures()` maps signature names to concrete serving functions."""

    @abc.abstractmethod
    def skipped_record_counts(self) -> dict:
        """{"train": (attempted, skipped), "eval": (attempted, skipped)} undecodable-image counters."""

    def deployment_labels(self) -> dict:
        return {}

    def extra_export_files(self) -> dict:
        """{file name: text} written beside the exported model: labels.txt when class names are known."""
        if not self.class_names:
            return {}
        return {LABELS_FILE_NAME: "\n".join(self.class_names) + "\n"}

    def report_figures(self, serving_model) -> dict:
        """{file name: matplotlib Figure} for the training report; `serving_model` is the best model's
        float32 copy (None before the first export)."""
        return {}

    def report_tables(self) -> dict:
        """{file name: text} written into the report directory (e.g. a confusion matrix as CSV)."""
        return {}
