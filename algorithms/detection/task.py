"""The detection task: what the shared runtime needs to train, evaluate (COCO AP) and export a RetinaNet."""

import dataclasses
import types

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from algorithms.detection import anchor_fit
from algorithms.detection import anchors as anchor_ops
from algorithms.detection import report_figures
from algorithms.detection.coco_metrics import CocoEvaluator
from algorithms.detection.model import RetinaNet, model_anchors, postprocess
from algorithms.detection.params import ANCHOR_FIT_GOAL, DetectionParams
from algorithms.detection.serving import DetectionServing
from algorithms.detection.spec import SPEC
from algorithms.runtime import job_records
from algorithms.runtime.checkpoints import restore_backbone, restore_matching
from algorithms.runtime.config import JobConfig
from algorithms.runtime.job_layout import JobLayout
from algorithms.runtime.task import Task
from core import feature_keys
from core.errors import UserInputError
from core.paths import join
from dataloaders import detection_input, tfrecord_files

HUBER_DELTA = 0.1  # upstream RetinaNet's box loss
ANCHOR_RECORD = "anchors.json"  # in the checkpoint dir: the anchor size an unset --anchor_size became


def focal_loss(logits: tf.Tensor, targets: tf.Tensor, alpha: float, gamma: float) -> tf.Tensor:
    """Element-wise sigmoid focal loss (Lin et al. 2017); targets are 0/1 of the logits' shape."""
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    probabilities = tf.sigmoid(logits)
    p_t = targets * probabilities + (1.0 - targets) * (1.0 - probabilities)
    alpha_t = targets * alpha + (1.0 - targets) * (1.0 - alpha)
    return alpha_t * tf.pow(1.0 - p_t, gamma) * cross_entropy


class DetectionTask(Task):
    spec = SPEC

    def __init__(self, config: JobConfig):
        super().__init__(config)
        self.params: DetectionParams = config.task_params
        self.anchors = model_anchors(self.params)
        self.evaluator = CocoEvaluator(config.num_classes, self.params.max_detections)

    # --- checks before anything is written -------------------------------------------------------------
    def preflight(self) -> None:
        p = self.params
        if p.padded_size != p.image_size:
            logging.info("image_size %s is padded to %s, a multiple of 2^fpn_max_level=%d", p.image_size,
                         p.padded_size, 2 ** p.max_level)
        self.check_data()
        logging.info("data: %d training file(s), %d validation file(s); %d anchors per image", len(self.train_files),
                     len(self.eval_files), len(self.anchors))
        self.check_anchor_fit()

    def check_anchor_fit(self) -> None:
        """Logs how many training boxes the anchors fit (anchor_fit). Under the goal, an unset --anchor_size becomes
        the size that fits more of them, recorded so the job's reruns keep it; a given one gets a warning."""
        p = self.params
        if p.anchor_size_from_data:
            directory = JobLayout.create(self.config.job_dir, self.config.placement).checkpoint_dir
            recorded = (job_records.read_record(directory, ANCHOR_RECORD, "anchor size") or {}).get("anchor_size")
            if isinstance(recorded, (int, float)) and recorded > 0:
                self._use_anchor_size(float(recorded))
                logging.info("anchors: --anchor_size=%g, as this job's first run chose it from the training boxes "
                             "(%s)", recorded, join(directory, ANCHOR_RECORD))
                return
        fit = anchor_fit.check(self.train_files, p)
        found = (f"{100 * fit.fit:.1f}% of {fit.boxes} boxes of the first training records have an anchor at IoU >= "
                 f"{anchor_ops.MATCH_THRESHOLD:.1f}")
        if fit.better_size is None:
            logging.info("anchors: %s (--anchor_size=%g)%s", found, p.anchor_size, "" if fit.fit >= ANCHOR_FIT_GOAL
                         else f"; no other --anchor_size fits {100 * anchor_fit.FIT_MARGIN:.0f} points more of them")
        else:
            shape = (f"median box {fit.median_side[0]:.0f}x{fit.median_side[1]:.0f} px in the {p.image_size[0]}x"
                     f"{p.image_size[1]} input; smallest anchor {p.anchor_size * 2 ** p.min_level:.0f} px")
            if p.anchor_size_from_data:
                self._use_anchor_size(fit.better_size)
                logging.info("anchors: with the default --anchor_size=%g only %s (%s); chose --anchor_size=%g, which "
                             "fits %.1f%% (give --anchor_size to fix it)", p.anchor_size, found, shape,
                             fit.better_size, 100 * fit.better_fit)
            else:
                logging.warning("anchors: with --anchor_size=%g only %s (%s); --anchor_size=%g fits %.1f%%",
                                p.anchor_size, found, shape, fit.better_size, 100 * fit.better_fit)
        if p.anchor_size_from_data and self.config.placement.is_chief:
            chosen_fit = fit.fit if fit.better_size is None else fit.better_fit
            job_records.write_record(directory, ANCHOR_RECORD, {"anchor_size": self.params.anchor_size,
                                                               "fit": chosen_fit}, "anchor size")

    def _use_anchor_size(self, size: float) -> None:
        self.params = dataclasses.replace(self.params, anchor_size=size)
        self.anchors = model_anchors(self.params)

    def check_first_record(self, path: str, example: tf.train.Example, flag: str) -> None:
        keys = tfrecord_files.example_feature_keys(example)
        if feature_keys.CLASS_LABEL in keys and feature_keys.OBJECT_LABEL not in keys:
            raise UserInputError(f"record 0 of {path} is a classification record (image/class/label); the detection "
                                 f"trainer needs boxes ({', '.join(feature_keys.BOXES)}) and "
                                 f"{feature_keys.OBJECT_LABEL}. Use --task=classification for classification data")
        if feature_keys.IMAGE not in keys:
            raise UserInputError(f"record 0 of {path} has no '{feature_keys.IMAGE}' (it has: "
                                 f"{', '.join(sorted(keys)) or 'nothing'})")

    # --- model -------------------------------------------------------------------------------------------
    def build_model(self) -> keras.Model:
        return RetinaNet(self.params, self.config.num_classes, name="retinanet")

    def warm_start(self, model: RetinaNet, checkpoint_prefix: str) -> None:
        """The backbone must match; the feature network and subnets are taken too when their shapes match
        (a detector of the same configuration), else they start fresh."""
        restored = restore_backbone(model.backbone.variables, checkpoint_prefix, f"--resnet_depth={self.params.resnet_depth}")
        rest = [v for v in model.variables if v.path not in set(restored)]
        taken, fresh = restore_matching(rest, checkpoint_prefix)
        logging.info("warm start from %s: backbone restored (%d variables); %d more restored, %d start fresh",
                     checkpoint_prefix, len(restored), len(taken), len(fresh))

    # --- data --------------------------------------------------------------------------------------------
    def _assign_targets(self, boxes, labels_1_based):
        return anchor_ops.assign_targets(tf.constant(self.anchors), boxes, labels_1_based)

    def train_dataset(self, input_context, start):
        p = self.params
        augment = types.SimpleNamespace(random_flip=p.random_flip, scale_min=p.scale_min, scale_max=p.scale_max,
                                        max_boxes=p.max_boxes_in_training, auto_augmentation=p.auto_augmentation)
        return detection_input.build_dataset(
            self.train_files, training=True, image_size=p.image_size, padded_size=p.padded_size,
            batch_size=input_context.get_per_replica_batch_size(self.config.train_batch_size),
            num_classes=self.config.num_classes, counters=self.train_counters, augment=augment,
            assign_targets=self._assign_targets, seed=start.seed, skip_records=start.skip_records,
            input_context=input_context, max_pixels=self.config.max_image_pixels)

    def eval_dataset(self, input_context):
        return detection_input.build_dataset(
            self.eval_files, training=False, image_size=self.params.image_size, padded_size=self.params.padded_size,
            batch_size=input_context.get_per_replica_batch_size(self.config.eval_batch_size),
            num_classes=self.config.num_classes, counters=self.eval_counters,
            num_records=self.config.num_eval_images, input_context=input_context,
            max_pixels=self.config.max_image_pixels)

    # --- loss and metrics --------------------------------------------------------------------------------
    def compute_loss(self, model, batch):
        """Focal loss over all non-ignored anchors plus detection_loss_weight x Huber loss over the positive
        ones, both divided by the number of positive anchors in the replica's batch (+1), as upstream."""
        images, (class_targets, box_targets) = batch
        outputs = model(images, training=True)
        p = self.params
        positive = tf.cast(class_targets > 0, tf.float32)  # [b, A]
        not_ignored = tf.cast(class_targets >= 0, tf.float32)
        one_hot = tf.one_hot(class_targets - 1, self.config.num_classes)  # background and ignored -> zeros
        class_loss = tf.reduce_sum(
            focal_loss(outputs["class_logits"], one_hot, p.focal_loss_alpha, p.focal_loss_gamma), axis=-1)
        class_loss = tf.reduce_sum(class_loss * not_ignored, axis=-1)
        # Huber averaged over the 4 coordinates = upstream's sum divided by 4 * positives.
        box_loss = keras.losses.huber(box_targets, outputs["box_deltas"], delta=HUBER_DELTA)
        box_loss = tf.reduce_sum(box_loss * positive, axis=-1)
        batch_size = tf.cast(tf.shape(images)[0], tf.float32)
        normalizer = (tf.reduce_sum(positive) + 1.0) / batch_size
        per_example = (class_loss + p.box_loss_weight * box_loss) / normalizer
        return per_example, self.weight_decay_loss(model)

    def detect(self, model, images, scaled_sizes) -> dict:
        return postprocess(model(images, training=False), tf.constant(self.anchors), scaled_sizes, self.params)

    def eval_step(self, model, batch):
        images, scaled_sizes, original_sizes, gt_boxes, gt_labels, gt_crowd, gt_areas, weights = batch
        detections = self.detect(model, images, scaled_sizes)
        return {**detections, "original_sizes": original_sizes, "gt_boxes": gt_boxes, "gt_labels": gt_labels,
                "gt_crowd": gt_crowd, "gt_areas": gt_areas, "weights": weights}

    # --- export ------------------------------------------------------------------------------------------
    def serving_module(self, model) -> tf.Module:
        return DetectionServing(model, lambda images, sizes: self.detect(model, images, sizes), self.params.image_size,
                                self.params.padded_size, self.class_names, self.config.max_image_pixels)

    # --- report ------------------------------------------------------------------------------------------
    def report_figures(self, serving) -> dict:
        figures = {}
        precision = self.evaluator.precision_at_50
        if precision is not None:
            figures["precision_recall.png"] = report_figures.precision_recall_figure(precision)
        if serving is not None:
            figures["predictions.png"] = report_figures.detections_figure(
                [report_figures.drawable_sample(*sample) for sample in self.prediction_samples(serving, 8)],
                self.display_names())
        return figures

    def truth_from_example(self, feature) -> np.ndarray:
        """The record's normalized ground-truth boxes, [n, 4]."""
        return np.stack([np.asarray(feature[key].float_list.value, np.float32) for key in feature_keys.BOXES],
                        axis=-1).reshape(-1, 4)

    def report_tables(self) -> dict:
        precision = self.evaluator.precision_at_50
        if precision is None:
            return {}
        rows = "\n".join(f"{r / 100:.2f},{p:.4f}" for r, p in enumerate(np.asarray(precision)))
        return {"precision_recall_iou50.csv": "recall,precision\n" + rows + "\n"}
