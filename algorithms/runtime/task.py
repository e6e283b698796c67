"""The contract between the shared runtime and one algorithm (a task).

A task builds its model, datasets, loss, evaluator and serving module; it never writes files or reports
metrics: the runtime does that, once, for every task. What both tasks do alike (data checks, skip counters,
class names, weight decay, the report's validation samples) lives here.
"""

import abc

import keras
import numpy as np
import tensorflow as tf

from algorithms.runtime.config import JobConfig
from algorithms.runtime.reproducibility import StreamStart
from algorithms.runtime.task_spec import TaskSpec
from core import feature_keys
from core.errors import UserInputError
from dataloaders import labels, record_pipeline, tfrecord_files
from dataloaders.labels import LABELS_FILE_NAME
from dataloaders.sources import ClassFolderSource, inspect_training_data


class Evaluator(abc.ABC):
    """Accumulates one evaluation pass, as Keras metrics do: reset(), update() per replica batch, result().

    `update` receives one local replica's eval_step outputs as numpy arrays. Every worker evaluates the whole
    validation set, and its local replicas together see each image once, so nothing is gathered across workers.
    """

    @abc.abstractmethod
    def reset(self) -> None:
        """Forgets the previous pass."""

    @abc.abstractmethod
    def update(self, outputs: dict) -> None:
        """Adds one replica's batch; rows whose weight is 0 are padding."""

    @property
    @abc.abstractmethod
    def num_images(self) -> int:
        """Real (non-padding) validation images seen in this pass."""

    @abc.abstractmethod
    def result(self) -> dict:
        """Final metrics (floats, `eval_images` an int) of the pass; called only when num_images > 0."""


class Task(abc.ABC):
    spec: TaskSpec  # the task's declaration (name, metric and its goal, ...), from its folder's spec.py
    evaluator: Evaluator  # made by the task; its last pass stays readable for the report

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def metric_name(self) -> str:
        """Reported to hypertune; picks the best model (higher is better when spec.maximize, else lower)."""
        return self.spec.metric

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
    def check_first_record(self, path: str, example: tf.train.Example, flag: str) -> None:
        """Raises UserInputError when `example`, the first record of `path`, is not one this task reads."""

    def check_class_folders(self, data: ClassFolderSource) -> None:
        """Reads a class-folder tree as the training data; only tasks that can learn from one override this."""
        raise UserInputError(f"--training_data_path={data.path} is a folder of class folders; {self.spec.title} "
                             f"reads {self.spec.records} in TFRecords (convert with `python -m data.jpeg_to_tf_record`)")

    def check_data(self) -> None:
        """What every task checks of its data: both globs resolve, their first records are this task's,
        num_eval_images fits the validation set; then its counters and class names."""
        c = self.config
        self.train_counters = record_pipeline.RecordCounters("train")
        self.eval_counters = record_pipeline.RecordCounters("eval")
        training = c.training_data or inspect_training_data(c.training_data_path)
        if isinstance(training, ClassFolderSource):
            return self.check_class_folders(training)
        self.train_files = list(training.files)
        self.check_first_record(training.first_record_path, training.first_example, "training_data_path")
        self.eval_files = tfrecord_files.resolve_files(c.validation_data_path, "validation_data_path")
        self.check_first_record(*tfrecord_files.first_example(self.eval_files, "validation_data_path"),
                                "validation_data_path")
        if c.num_eval_images:
            available = tfrecord_files.count_records(self.eval_files, c.num_eval_images)
            if available < c.num_eval_images:
                raise UserInputError(
                    f"--num_eval_images={c.num_eval_images} is more than the {available} records in "
                    f"--validation_data_path={c.validation_data_path}; lower it or use 0 for all of them")
        self.class_names = labels.load_class_names(c.labels_file, self.train_files, c.num_classes)
        return None

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
    def train_dataset(self, input_context: tf.distribute.InputContext, start: StreamStart) -> tf.data.Dataset:
        """Endless per-replica batches for training: shuffled and augmented from start.seed, after the first
        start.skip_records records of the stream."""

    @abc.abstractmethod
    def eval_dataset(self, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """One pass over the evaluation images, per-replica batches."""

    @abc.abstractmethod
    def compute_loss(self, model: keras.Model, batch) -> tuple[tf.Tensor, tf.Tensor]:
        """(per-example loss [b], regularisation scalar) for one training batch."""

    def weight_decay_loss(self, model: keras.Model) -> tf.Tensor:
        """weight_decay x L2 of the trainable weights, not of biases or BatchNorm scales/offsets (as the
        upstream trainers do)."""
        kernels = [v for v in model.trainable_variables if len(v.shape) > 1]
        return self.config.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in kernels])

    @abc.abstractmethod
    def eval_step(self, model: keras.Model, batch) -> dict:
        """One replica's per-batch outputs for the evaluator (tensors; weight 0 marks padding)."""

    @abc.abstractmethod
    def serving_module(self, model: keras.Model) -> tf.Module:
        """A tf.Module whose `serving_signatures()` maps signature names to concrete serving functions."""

    def skipped_record_counts(self) -> dict:
        """{"train": (attempted, skipped), "eval": (attempted, skipped)} undecodable-image counters."""
        return {"train": self.train_counters.read(), "eval": self.eval_counters.read()}

    def extra_export_files(self) -> dict:
        """{file name: text} written beside the exported model: labels.txt when class names are known."""
        if not self.class_names:
            return {}
        return {LABELS_FILE_NAME: "\n".join(self.class_names) + "\n"}

    def display_names(self) -> list[str]:
        """Class names for figures: the known names, else the 1-based label numbers."""
        return self.class_names or [str(label) for label in range(1, self.config.num_classes + 1)]

    # --- the report ----------------------------------------------------------------------------------------
    def validation_images(self, count: int):
        """Up to `count` (encoded image, ground truth) pairs from the start of the validation data; the truth
        is whatever truth_from_example makes of a record."""
        found = 0
        for path in self.eval_files:
            for record in tfrecord_files.read_records(path, count - found):
                feature = tf.train.Example.FromString(record).features.feature
                yield self.image_from_example(feature), self.truth_from_example(feature)
                found += 1
            if found >= count:
                return

    @staticmethod
    def image_from_example(feature) -> bytes:
        return feature[feature_keys.IMAGE].bytes_list.value[0]

    def truth_from_example(self, feature):
        """The ground truth of one validation record, for the report's sample figure."""
        return None

    def prediction_samples(self, serving: tf.Module, count: int) -> list[tuple]:
        """(encoded image, truth, serving outputs as numpy) for the first validation images, through the
        exported signature (the same decode, resize and post-processing as serving); undecodable images,
        already counted by the evaluation, are left out."""
        serve = serving.serve
        samples = []
        for encoded, truth in self.validation_images(count):
            try:
                outputs = serve(tf.constant([encoded]), tf.constant([b""]))
            except tf.errors.InvalidArgumentError:
                continue
            samples.append((encoded, truth, {key: np.asarray(value[0]) for key, value in outputs.items()}))
        return samples

    def report_figures(self, serving: tf.Module | None) -> dict:
        """{file name: matplotlib Figure} for the training report; `serving` is the serving module of the
        best model (None before the first export)."""
        return {}

    def report_tables(self) -> dict:
        """{file name: text} written into the report directory (e.g. a confusion matrix as CSV)."""
        return {}
