"""The classification task: what the shared runtime needs to train, evaluate and export a classifier."""

import dataclasses

import keras
import tensorflow as tf
from absl import logging

from algorithms.classification import pretrained, report_figures
from algorithms.classification.model import MODEL_TYPES, ImageClassifier
from algorithms.runtime.checkpoints import resolve_checkpoint_prefix, restore_backbone, restore_matching
from algorithms.runtime.config import JobConfig
from algorithms.runtime.errors import UserInputError
from algorithms.runtime.report import decode_for_display
from algorithms.runtime.schedules import SwitchedSchedule
from algorithms.runtime.task import Task
from data import classification_input, image_sources, labels, record_pipeline, tfrecord_files
from export.signatures import ClassificationServing


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


class ClassificationTask(Task):
    name = "classification"
    metric_name = "top_1_accuracy"

    def __init__(self, config: JobConfig):
        super().__init__(config)
        self.params: ClassificationParams = config.task_params
        self.last_confusion_matrix = None
        self.train_images = self.eval_images = None  # (paths, 1-based labels) when the data is class folders

    # --- checks before anything is written -------------------------------------------------------------
    def preflight(self) -> None:
        p = self.params
        if p.model_type not in MODEL_TYPES:
            raise UserInputError(f"--model_type={p.model_type!r} is not supported; use one of {', '.join(MODEL_TYPES)}")
        if not 0.0 <= p.label_smoothing < 1.0:
            raise UserInputError(f"--label_smoothing={p.label_smoothing} must be in [0, 1)")
        if p.image_size < 16:
            raise UserInputError(f"--image_size={p.image_size} is too small; use at least 16 pixels")
        if p.pretrained_weights and self.config.pretrained_checkpoint_path:
            raise UserInputError("give either --pretrained_weights or --pretrained_checkpoint_path, not both")
        if p.fine_tune_after_steps >= self.config.max_steps:  # a later run with a higher --max_steps goes on
            logging.warning("--fine_tune_after_steps=%d is not below --max_steps=%d: this run trains the head only",
                            p.fine_tune_after_steps, self.config.max_steps)
        if p.pretrained_weights == "imagenet":
            pretrained.check_imagenet_available(p.model_type)  # fails in seconds offline, before any output
        self.check_data()
        if self.train_images is None:
            logging.info("data: %d training file(s), %d validation file(s)", len(self.train_files), len(self.eval_files))

    def check_data(self) -> None:
        if not image_sources.is_class_folder_tree(self.config.training_data_path):
            return super().check_data()
        c = self.config
        self.train_counters = record_pipeline.RecordCounters("train")
        self.eval_counters = record_pipeline.RecordCounters("eval")
        try:
            listed = image_sources.read_class_folders(c.training_data_path, 0.0 if c.validation_data_path else
                                                      self.params.validation_split_ratio, c.seed or 0)
            names = image_sources.derive_labels(listed)
            if c.validation_data_path:
                if not image_sources.is_class_folder_tree(c.validation_data_path):
                    raise UserInputError(f"--training_data_path={c.training_data_path} is a folder of class folders, "
                                         f"so --validation_data_path must be one too (or leave it out and set "
                                         f"--validation_split_ratio)")
                validation = [dataclasses.replace(item, split="validation") for item in
                              image_sources.read_class_folders(c.validation_data_path, 0.0, c.seed or 0)]
                listed = [item for item in listed if item.split == "train"] + validation
        except image_sources.SourceError as error:
            raise UserInputError(str(error)) from None
        if len(names) != c.num_classes:
            raise UserInputError(f"--training_data_path={c.training_data_path} has {len(names)} class folders "
                                 f"({', '.join(names)}) but --num_classes={c.num_classes}")
        if c.labels_file and labels.read_labels_file(c.labels_file) != names:
            raise UserInputError(f"--labels_file={c.labels_file} does not list the class folders in sorted order "
                                 f"({', '.join(names)}); leave it out: the folder names are the labels")
        label_ids = {name: index + 1 for index, name in enumerate(names)}
        unknown = sorted({item.label for item in listed if item.label not in label_ids})
        if unknown:
            raise UserInputError(f"--validation_data_path={c.validation_data_path} has class folders the training "
                                 f"data lacks: {', '.join(unknown)}")
        self.train_images, self.eval_images = (
            ([item.path for item in listed if item.split == split],
             [label_ids[item.label] for item in listed if item.split == split]) for split in ("train", "validation"))
        if not self.eval_images[0]:
            raise UserInputError(f"no validation images: raise --validation_split_ratio (now "
                                 f"{self.params.validation_split_ratio}) or give --validation_data_path")
        if c.num_eval_images > len(self.eval_images[0]):
            raise UserInputError(f"--num_eval_images={c.num_eval_images} is more than the "
                                 f"{len(self.eval_images[0])} validation images; lower it or use 0 for all of them")
        self.class_names = names
        logging.info("class folders: %d training and %d validation images of %d classes (%s)",
                     len(self.train_images[0]), len(self.eval_images[0]), len(names), ", ".join(names))

    def check_first_record(self, files: list[str], flag: str) -> None:
        path, example = tfrecord_files.first_example(files, flag)
        keys = tfrecord_files.example_feature_keys(example)
        if "image/object/class/label" in keys and classification_input.LABEL_KEY not in keys:
            raise UserInputError(f"record 0 of {path} is a detection record (image/object/...); the classification "
                                 "trainer needs image/class/label. Use --task=detection for object detection data")
        for key in (classification_input.IMAGE_KEY, classification_input.LABEL_KEY):
            if key not in keys:
                raise UserInputError(f"record 0 of {path} has no '{key}' (it has: {', '.join(sorted(keys)) or 'nothing'}); "
                                     f"classification records need '{classification_input.IMAGE_KEY}' (encoded image) "
                                     f"and '{classification_input.LABEL_KEY}' (1-based int label)")
        labels = tfrecord_files.int64_values(example, classification_input.LABEL_KEY)
        if len(labels) != 1 or not 1 <= labels[0] <= self.config.num_classes:
            raise UserInputError(f"record 0 of {path} has {classification_input.LABEL_KEY}={labels}, outside "
                                 f"1..{self.config.num_classes}: labels are 1-based (labels-file line + 1); "
                                 "fix the data or --num_classes")

    # --- model -------------------------------------------------------------------------------------------
    def build_model(self) -> keras.Model:
        p = self.params
        resnet_from_preset = p.pretrained_weights == "imagenet" and p.model_type.startswith("resnet-")
        return ImageClassifier(p.model_type, p.image_size, self.config.num_classes, dropout_rate=p.dropout_rate,
                               resnet_from_preset=resnet_from_preset, name="image_classifier")

    def load_pretrained(self, model: ImageClassifier) -> None:
        p = self.params
        if not p.pretrained_weights:
            return
        kind = pretrained.describe(p.pretrained_weights)
        if kind == "imagenet":
            pretrained.load_imagenet(model.backbone, p.model_type, p.image_size)
        elif kind == "weights_file":
            pretrained.load_weights_file(model.backbone, p.pretrained_weights, p.model_type)
        elif kind == "keras_hub_preset":
            pretrained.load_keras_hub_preset(model.backbone, p.pretrained_weights, p.model_type)
        else:
            self.warm_start(model, resolve_checkpoint_prefix(p.pretrained_weights, "pretrained_weights"))
        pretrained.log_loaded(kind, p.pretrained_weights, p.model_type)

    # --- training phases: head only, then (optionally) the whole network ------------------------------
    def training_phase_steps(self) -> tuple[int, ...]:
        return (self.params.fine_tune_after_steps,) if self.params.fine_tune_after_steps else ()

    def set_training_phase(self, model: ImageClassifier, step: int) -> bool:
        p = self.params
        frozen = p.train_only_top_layer and not (p.fine_tune_after_steps and step >= p.fine_tune_after_steps)
        if model.backbone.trainable == (not frozen):
            return False
        # A frozen Keras 3 backbone also runs its BatchNorm layers in inference mode.
        model.backbone.trainable = not frozen
        logging.info("step %d: training %s", step, "the head only (backbone frozen)" if frozen else
                     f"the whole network at learning rate {self._fine_tune_learning_rate():.5g}"
                     if p.fine_tune_after_steps else "the whole network")
        return True

    def _fine_tune_learning_rate(self) -> float:
        return self.params.fine_tune_learning_rate or self.config.schedule.initial_learning_rate / 10

    def learning_rate_schedule(self, schedule):
        if not self.params.fine_tune_after_steps:
            return schedule
        return SwitchedSchedule(schedule, self.params.fine_tune_after_steps, self._fine_tune_learning_rate())

    def warm_start(self, model: ImageClassifier, checkpoint_prefix: str) -> None:
        restore_backbone(model.backbone.variables, checkpoint_prefix, f"--model_type={self.params.model_type}")
        head_restored, _ = restore_matching(model.head.variables, checkpoint_prefix)
        if len(head_restored) == len(model.head.variables):
            logging.info("warm start: backbone and head restored from %s", checkpoint_prefix)
        else:
            logging.info("warm start: backbone restored from %s; the head is re-initialised for %d classes",
                         checkpoint_prefix, self.config.num_classes)

    # --- data --------------------------------------------------------------------------------------------
    def train_dataset(self, input_context):
        return classification_input.build_dataset(
            self.train_files, image_files=self.train_images, training=True, image_size=self.params.image_size,
            batch_size=input_context.get_per_replica_batch_size(self.config.train_batch_size),
            num_classes=self.config.num_classes, counters=self.train_counters, seed=self.config.seed,
            input_context=input_context)

    def eval_dataset(self, input_context):
        self.eval_counters.reset()  # built once per evaluation pass: each pass counts from zero
        return classification_input.build_dataset(
            self.eval_files, image_files=self.eval_images, training=False, image_size=self.params.image_size,
            batch_size=input_context.get_per_replica_batch_size(self.config.eval_batch_size),
            num_classes=self.config.num_classes,
            counters=self.eval_counters, num_records=self.config.num_eval_images, input_context=input_context)

    def skipped_record_counts(self) -> dict:
        return {"train": self.train_counters.read(), "eval": self.eval_counters.read()}

    # --- loss and metrics --------------------------------------------------------------------------------
    def compute_loss(self, model, batch):
        images, labels = batch
        logits = tf.cast(model(images, training=True), tf.float32)
        targets = tf.one_hot(labels, self.config.num_classes)
        per_example = keras.losses.categorical_crossentropy(
            targets, logits, from_logits=True, label_smoothing=self.params.label_smoothing)
        # L2 on weights, not on biases or BatchNorm scales/offsets (as the upstream trainers do).
        kernels = [v for v in model.trainable_variables if len(v.shape) > 1]
        regularization = self.config.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in kernels])
        if self.params.regularizers_l2:
            regularization += self.params.regularizers_l2 * tf.nn.l2_loss(model.head.kernel)
        return per_example, regularization

    def eval_step(self, model, batch):
        images, labels, weights = batch  # weight 0 marks the padding that keeps every replica's batch full
        logits = tf.cast(model(images, training=False), tf.float32)
        top_k = min(5, self.config.num_classes)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return {
            "correct_top_1": tf.reduce_sum(weights * tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32)),
            "correct_top_5": tf.reduce_sum(weights * tf.cast(tf.math.in_top_k(labels, logits, top_k), tf.float32)),
            "loss_sum": tf.reduce_sum(weights * cross_entropy),
            "count": tf.reduce_sum(weights),
            "confusion_matrix": tf.math.confusion_matrix(labels, tf.argmax(logits, axis=-1), self.config.num_classes,
                                                         weights=weights, dtype=tf.float32),
        }

    def eval_metrics(self, sums: dict) -> dict:
        self.last_confusion_matrix = sums.get("confusion_matrix")
        count = float(sums["count"])
        if count == 0:
            raise UserInputError(f"no validation image could be decoded from --validation_data_path="
                                 f"{self.config.validation_data_path}")
        return {"top_1_accuracy": float(sums["correct_top_1"]) / count,
                "top_5_accuracy": float(sums["correct_top_5"]) / count,
                "eval_loss": float(sums["loss_sum"]) / count, "eval_images": int(round(count))}

    # --- export ------------------------------------------------------------------------------------------
    def serving_module(self, model) -> tf.Module:
        return ClassificationServing(model, self.params.image_size, self.class_names)

    # --- report ------------------------------------------------------------------------------------------
    def _display_names(self) -> list[str]:
        return self.class_names or [str(label) for label in range(1, self.config.num_classes + 1)]

    def report_tables(self) -> dict:
        if self.last_confusion_matrix is None:
            return {}
        return {"confusion_matrix.csv": report_figures.confusion_matrix_csv(self.last_confusion_matrix,
                                                                           self._display_names())}

    def report_figures(self, serving_model) -> dict:
        figures = {}
        names = self._display_names()
        if self.last_confusion_matrix is not None:
            figures["confusion_matrix.png"] = report_figures.confusion_matrix_figure(self.last_confusion_matrix, names)
        if serving_model is not None:
            figures["predictions.png"] = report_figures.predictions_figure(self._prediction_samples(serving_model, names))
        return figures

    def _prediction_samples(self, model, names, count: int = 16) -> list[tuple]:
        """The first validation images as the exported signature sees them (same decode, resize, softmax)."""
        serve = self.serving_module(model).serve
        samples = []
        if self.eval_images:
            for path, label in list(zip(*self.eval_images))[:count]:
                with tf.io.gfile.GFile(path, "rb") as handle:
                    self._add_sample(samples, serve, handle.read(), label, names)
            return samples
        for path in self.eval_files:
            for record in tfrecord_files.read_records(path, count - len(samples)):
                feature = tf.train.Example.FromString(record).features.feature
                self._add_sample(samples, serve, feature[classification_input.IMAGE_KEY].bytes_list.value[0],
                                 feature[classification_input.LABEL_KEY].int64_list.value[0], names)
            if len(samples) >= count:
                break
        return samples

    @staticmethod
    def _add_sample(samples: list, serve, encoded: bytes, label: int, names: list[str]) -> None:
        try:
            probabilities = serve(tf.constant([encoded]), tf.constant([b""]))["probabilities"][0].numpy()
        except tf.errors.InvalidArgumentError:
            return  # an undecodable image: already counted and skipped by the evaluation
        predicted = int(probabilities.argmax())
        samples.append((decode_for_display(encoded), names[label - 1], names[predicted], float(probabilities[predicted])))
