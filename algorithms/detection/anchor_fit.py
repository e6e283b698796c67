"""How well the anchors fit the training boxes (YOLO's "best possible recall"), read before training.

A ground-truth box trains the anchors it overlaps at IoU >= anchors.MATCH_THRESHOLD. A box with no such anchor is
still matched to its best one (anchors.assign_targets), but that single positive starts far from the box, so small
objects under the smallest anchors (anchor_size x 2^fpn_min_level pixels) or long thin ones learn slowly. The job
logs the share of training boxes that have an anchor at IoU >= 0.5; under ANCHOR_FIT_GOAL, the detection task
replaces an unset --anchor_size by best_anchor_size's, or warns naming it when --anchor_size was given.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from algorithms.detection import anchors as anchor_ops
from algorithms.detection.model import model_anchors
from algorithms.detection.params import ANCHOR_FIT_GOAL, DetectionParams
from core import feature_keys
from dataloaders import image_ops

SAMPLED_IMAGES = 500  # the first records of the training files: enough for a share, read in about a second
SAMPLED_BYTES = 32 << 20  # and no more than this of them, so a bucket of large photos costs seconds, not minutes
CANDIDATE_ANCHOR_SIZES = (4.0, 3.0, 2.0, 1.5, 1.0, 6.0, 8.0)
FIT_MARGIN = 0.05  # sizes that fit this close to the best one are as good; the one nearest the default is taken
_BOXES_PER_CHUNK = 16  # x up to ~200k anchors (1024 px) stays under ~15 MB per IoU matrix


def sample_training_boxes(files: list[str], image_size: tuple, max_images: int = SAMPLED_IMAGES,
                          max_bytes: int = SAMPLED_BYTES) -> np.ndarray:
    """float32 [n, 4] boxes (ymin, xmin, ymax, xmax) of the first readable training records (up to `max_images`
    of them, `max_bytes` in all), in pixels of the model input: the image fitted into image_size with its aspect
    ratio kept, as training sees it before augmentation. Unreadable records are skipped here; the input pipeline
    reports them by name."""
    features = {feature_keys.IMAGE: tf.io.FixedLenFeature([], tf.string),
                **{key: tf.io.VarLenFeature(tf.float32) for key in feature_keys.BOXES}}
    target = tf.constant(image_size, tf.float32)

    def fitted_boxes(serialized):
        example = tf.io.parse_single_example(serialized, features)
        corners = tf.stack([tf.sparse.to_dense(example[key]) for key in feature_keys.BOXES], axis=-1)
        shape = tf.cast(image_ops.header_size(example[feature_keys.IMAGE]), tf.float32)
        shape = tf.where(shape > 0, shape, target)  # a format the header reader does not know: its fitted size
        scaled = tf.round(shape * tf.reduce_min(target / shape))
        return corners * tf.tile(scaled, [2])

    records, read = [], 0
    for serialized in tf.data.TFRecordDataset(files).take(max_images).ignore_errors().as_numpy_iterator():
        records.append(serialized)
        read += len(serialized)
        if read >= max_bytes:
            break
    if not records:
        return np.zeros((0, 4), np.float32)
    dataset = (tf.data.Dataset.from_tensor_slices(records).map(fitted_boxes).ignore_errors()
               .unbatch().filter(lambda box: tf.reduce_all(box[2:] > box[:2])))
    return np.asarray(list(dataset.as_numpy_iterator()), np.float32).reshape(-1, 4)


def best_anchor_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """float32 [n]: each box's highest IoU with any anchor (both [.., 4] corners in the same pixels), by the
    matcher's own pairwise_iou, a chunk of boxes at a time."""
    best = [tf.reduce_max(anchor_ops.pairwise_iou(boxes[start:start + _BOXES_PER_CHUNK], anchors), axis=1)
            for start in range(0, len(boxes), _BOXES_PER_CHUNK)]
    return tf.concat(best, axis=0).numpy() if best else np.zeros(0, np.float32)


def anchor_fit(boxes: np.ndarray, params: DetectionParams) -> float:
    """The share of `boxes` with an anchor of `params` at IoU >= MATCH_THRESHOLD (1.0 for no boxes)."""
    if not len(boxes):
        return 1.0
    return float(np.mean(best_anchor_iou(boxes, model_anchors(params)) >= anchor_ops.MATCH_THRESHOLD))


def best_anchor_size(boxes: np.ndarray, params: DetectionParams) -> tuple[float, float]:
    """(anchor_size, its fit): of the candidate sizes that fit within FIT_MARGIN of the best one, the nearest to
    params' own. Fit alone prefers small anchors (more cells to match), which measured worse: on 17 px objects at
    128 px 1.5 fits 74% and 2 fits 71%, but 120 steps reach AP 0.002 with 1.5, 0.021-0.027 with 2, 0.003 with 4."""
    fits = {size: anchor_fit(boxes, dataclasses.replace(params, anchor_size=size))
            for size in dict.fromkeys((params.anchor_size, *CANDIDATE_ANCHOR_SIZES))}
    best = max(fits.values())
    size = min((size for size, fit in fits.items() if fit >= best - FIT_MARGIN),
               key=lambda size: abs(math.log(size / params.anchor_size)))
    return size, fits[size]


@dataclasses.dataclass(frozen=True)
class AnchorFit:
    boxes: int  # how many training boxes were read
    median_side: tuple  # (height, width) px of the median box in the model input
    fit: float  # the share params' anchors fit
    better_size: float | None  # best_anchor_size, when params' fit is under the goal and it is another size
    better_fit: float | None


def check(files: list[str], params: DetectionParams) -> AnchorFit:
    """How params' anchors fit the first training records' boxes, and a better size when they fit too few."""
    boxes = sample_training_boxes(files, params.image_size)
    sides = np.median(boxes[:, 2:] - boxes[:, :2], axis=0) if len(boxes) else np.zeros(2)
    fit = anchor_fit(boxes, params)
    better_size = better_fit = None
    if fit < ANCHOR_FIT_GOAL:
        size, best = best_anchor_size(boxes, params)
        if size != params.anchor_size:
            better_size, better_fit = size, best
    return AnchorFit(len(boxes), (float(sides[0]), float(sides[1])), fit, better_size, better_fit)
