"""The classification task: what the shared runtime needs to train, evaluate and export a classifier."""

import dataclasses

import keras
import tensorflow as tf
from absl import logging

from algorithms import backbones
from algorithms.classification import pretrained, report_figures
from algorithms.classification.model import ImageClassifier
from algorithms.classification.params import ClassificationParams
from algorithms.classification.serving import ClassificationServing
from algorithms.classification.spec import SPEC
from algorithms.runtime.checkpoints import resolve_checkpoint_prefix, restore_backbone, restore_matching
from algorithms.runtime.config import JobConfig
from algorithms.runtime.report import decode_for_display
from algorithms.runtime.schedules import SwitchedSchedule
from algorithms.runtime.task import Evaluator, Task
from core import feature_keys
from core.errors import UserInputError
from data import image_sources
from dataloaders import classification_input, labels, tfrecord_files


class ClassificationEvaluator(Evaluator):
    """Top-1/top-5 accuracy, the mean cross-entropy and the confusion matrix, summed over weighted images."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion_matrix = None  # of the last pass, for the report
        self.reset()

    def reset(self) -> None:
        self.sums = {}

    def update(self, outputs: dict) -> None:
        for key, value in outputs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value  # scalars and the confusion matrix alike

    @property
    def num_images(self) -> int:
        return int(round(float(self.sums.get("count", 0.0))))

    def result(self) -> dict:
        count = float(self.sums["count"])
        self.confusion_matrix = self.sums["confusion_matrix"]
        return {"top_1_accuracy": float(self.sums["correct_top_1"]) / count,
                "top_5_accuracy": float(self.sums["correct_top_5"]) / count,
                "eval_loss": float(self.sums["loss_sum"]) / count, "eval_images": self.num_images}


class ClassificationTask(Task):
    spec = SPEC

    def __init__(self, config: JobConfig):
        super().__init__(config)
        self.params: ClassificationParams = config.task_params
        self.evaluator = ClassificationEvaluator(config.num_classes)
        self.train_images = self.eval_images = None  # (paths, 1-based labels) when the data is class folders

    # --- checks before anything is written -------------------------------------------------------------
    def preflight(self) -> None:
        p = self.params
        if self.config.num_classes < 2:
            raise UserInputError(
                f"--num_classes={self.config.num_classes}: a classifier needs at least 2 classes (of "
                f"{self.config.training_data_path}); to find one kind of object in images, train object detection "
                "on records with boxes, where --num_classes=1 works")
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

    def check_class_folders(self, data) -> None:
        """Class-folder input: the folder names are the labels; validation from --validation_data_path (class
        folders too) or a seeded share of the training folders."""
        c = self.config
        try:
            split = 0.0 if c.validation_data_path else self.params.validation_split_ratio
            listed, names = data.listing(split, c.seed or 0), data.class_names(split, c.seed or 0)
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

    def check_first_record(self, path: str, example: tf.train.Example, flag: str) -> None:
        keys = tfrecord_files.example_feature_keys(example)
        if feature_keys.OBJECT_LABEL in keys and feature_keys.CLASS_LABEL not in keys:
            raise UserInputError(f"record 0 of {path} is a detection record (image/object/...); the classification "
                                 "trainer needs image/class/label. Use --task=detection for object detection data")
        for key in (feature_keys.IMAGE, feature_keys.CLASS_LABEL):
            if key not in keys:
                raise UserInputError(f"record 0 of {path} has no '{key}' (it has: {', '.join(sorted(keys)) or 'nothing'}); "
                                     f"classification records need '{feature_keys.IMAGE}' (encoded image) "
                                     f"and '{feature_keys.CLASS_LABEL}' (1-based int label)")
        labels = tfrecord_files.int64_values(example, feature_keys.CLASS_LABEL)
        if len(labels) != 1 or not 1 <= labels[0] <= self.config.num_classes:
            raise UserInputError(f"record 0 of {path} has {feature_keys.CLASS_LABEL}={labels}, outside "
                                 f"1..{self.config.num_classes}: labels are 1-based (labels-file line + 1); "
                                 "fix the data or --num_classes")

    # --- model -------------------------------------------------------------------------------------------
    def build_model(self) -> keras.Model:
        p = self.params
        # KerasHub's ImageNet ResNets differ a little from the config-built ones: build the preset's architecture.
        resnet_from_preset = (p.pretrained_weights == "imagenet"
                              and backbones.spec(p.model_type).imagenet_source == backbones.KERAS_HUB)
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
    def train_dataset(self, input_context, start):
        return classification_input.build_dataset(
            self.train_files, image_files=self.train_images, training=True, image_size=self.params.image_size,
            batch_size=input_context.get_per_replica_batch_size(self.config.train_batch_size),
            num_classes=self.config.num_classes, counters=self.train_counters, seed=start.seed,
            skip_records=start.skip_records, input_context=input_context, max_pixels=self.config.max_image_pixels,
            crop_min_area=self.params.crop_min_area)

    def eval_dataset(self, input_context):
        return classification_input.build_dataset(
            self.eval_files, image_files=self.eval_images, training=False, image_size=self.params.image_size,
            batch_size=input_context.get_per_replica_batch_size(self.config.eval_batch_size),
            num_classes=self.config.num_classes,
            counters=self.eval_counters, num_records=self.config.num_eval_images, input_context=input_context,
            max_pixels=self.config.max_image_pixels)

    # --- loss and metrics --------------------------------------------------------------------------------
    def compute_loss(self, model, batch):
        images, labels = batch
        logits = tf.cast(model(images, training=True), tf.float32)
        targets = tf.one_hot(labels, self.config.num_classes)
        per_example = keras.losses.categorical_crossentropy(
            targets, logits, from_logits=True, label_smoothing=self.params.label_smoothing)
        # L2 on weights, not on biases or BatchNorm scales/offsets (as the upstream trainers do).
        regularization = self.weight_decay_loss(model)
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

    # --- export ------------------------------------------------------------------------------------------
    def serving_module(self, model) -> tf.Module:
        return ClassificationServing(model, self.params.image_size, self.class_names, self.config.max_image_pixels)

    # --- report ------------------------------------------------------------------------------------------
    def report_tables(self) -> dict:
        if self.evaluator.confusion_matrix is None:
            return {}
        return {"confusion_matrix.csv": report_figures.confusion_matrix_csv(self.evaluator.confusion_matrix,
                                                                           self.display_names())}

    def report_figures(self, serving) -> dict:
        figures = {}
        names = self.display_names()
        if self.evaluator.confusion_matrix is not None:
            figures["confusion_matrix.png"] = report_figures.confusion_matrix_figure(self.evaluator.confusion_matrix,
                                                                                   names)
        if serving is not None:
            samples = []
            for encoded, label, outputs in self.prediction_samples(serving, count=16):
                probabilities = outputs["probabilities"]
                predicted = int(probabilities.argmax())
                samples.append((decode_for_display(encoded), names[label - 1], names[predicted],
                                float(probabilities[predicted])))
            figures["predictions.png"] = report_figures.predictions_figure(samples)
        return figures

    def validation_images(self, count: int):
        if self.eval_images is None:
            yield from super().validation_images(count)
            return
        for path, label in list(zip(*self.eval_images))[:count]:
            with tf.io.gfile.GFile(path, "rb") as handle:
                yield handle.read(), label

    def truth_from_example(self, feature) -> int:
        return feature[feature_keys.CLASS_LABEL].int64_list.value[0]
