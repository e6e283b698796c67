"""RetinaNet anchors, box coding and anchor-to-ground-truth assignment.

Written here rather than taken from KerasHub's AnchorGenerator / RetinaNetLabelEncoder because those
differ from the upstream RetinaNet the built-in came from: KerasHub puts anchor centres on the top-left
corner of each cell (not its centre), reads aspect ratios as height/width (the built-in's bbox_aspect_ratios
are width/height), rounds anchor sides to integers and matches at 0.5/0.4. These follow the upstream
recipe: centres at (i + 0.5) * stride, side = anchor_size * stride * 2^(scale/num_scales), match and
unmatched thresholds both 0.5, and every ground-truth box matched to its best anchor.

Boxes are [ymin, xmin, ymax, xmax] in pixels of the model input. Anchor order is level, row, column,
(scale, aspect ratio): the order of the heads' reshaped outputs.
"""

import numpy as np
import tensorflow as tf

MATCH_THRESHOLD = 0.5
UNMATCHED_THRESHOLD = 0.5
BACKGROUND = 0
IGNORED = -1
# Largest log-ratio decode_boxes accepts, so an untrained head cannot produce inf boxes.
MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))


def generate_anchors(image_size: tuple, min_level: int, max_level: int, num_scales: int,
                     aspect_ratios: tuple, anchor_size: float) -> np.ndarray:
    """float32 [num_anchors, 4] for an input of image_size (height, width), a multiple of 2^max_level."""
    height, width = image_size
    per_level = []
    for level in range(min_level, max_level + 1):
        stride = 2 ** level
        shapes = []
        for scale in range(num_scales):
            side = anchor_size * stride * 2 ** (scale / num_scales)
            for ratio in aspect_ratios:
                shapes.append((side / np.sqrt(ratio), side * np.sqrt(ratio)))  # (height, width)
        shapes = np.asarray(shapes, np.float64)
        centers_y = (np.arange(height // stride) + 0.5) * stride
        centers_x = (np.arange(width // stride) + 0.5) * stride
        grid_y, grid_x = np.meshgrid(centers_y, centers_x, indexing="ij")
        centers = np.stack([grid_y.ravel(), grid_x.ravel()], axis=-1)[:, None, :]  # [cells, 1, 2]
        half = shapes[None, :, :] / 2.0  # [1, shapes, 2]
        boxes = np.concatenate([centers - half, centers + half], axis=-1)  # [cells, shapes, 4]
        per_level.append(boxes.reshape(-1, 4))
    return np.concatenate(per_level, axis=0).astype(np.float32)


def _centers_and_sizes(boxes):
    sizes = boxes[..., 2:4] - boxes[..., 0:2]
    centers = boxes[..., 0:2] + 0.5 * sizes
    return centers, sizes


def encode_boxes(boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Boxes [..., 4] relative to their anchors: (dy/h_a, dx/w_a, log(h/h_a), log(w/w_a))."""
    centers, sizes = _centers_and_sizes(boxes)
    anchor_centers, anchor_sizes = _centers_and_sizes(anchors)
    sizes = tf.maximum(sizes, 1e-6)
    return tf.concat([(centers - anchor_centers) / anchor_sizes, tf.math.log(sizes / anchor_sizes)], axis=-1)


def decode_boxes(deltas: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Inverse of encode_boxes."""
    anchor_centers, anchor_sizes = _centers_and_sizes(anchors)
    centers = deltas[..., 0:2] * anchor_sizes + anchor_centers
    sizes = tf.exp(tf.minimum(deltas[..., 2:4], MAX_LOG_SCALE)) * anchor_sizes
    return tf.concat([centers - 0.5 * sizes, centers + 0.5 * sizes], axis=-1)


def pairwise_iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """[n, 4] x [m, 4] -> [n, m] intersection over union."""
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    top_left = tf.maximum(a[..., :2], b[..., :2])
    bottom_right = tf.minimum(a[..., 2:], b[..., 2:])
    intersection = tf.reduce_prod(tf.maximum(bottom_right - top_left, 0.0), axis=-1)
    area_a = tf.reduce_prod(a[..., 2:] - a[..., :2], axis=-1)
    area_b = tf.reduce_prod(b[..., 2:] - b[..., :2], axis=-1)
    return intersection / tf.maximum(area_a + area_b - intersection, 1e-8)


def assign_targets(anchors: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor):
    """One image's training targets.

    anchors [A, 4]; boxes [G, 4] (G may be 0); classes [G] int32 1-based.
    Returns class targets [A] int32 (1..C for a matched anchor, BACKGROUND, or IGNORED between the two
    thresholds) and box targets [A, 4] (encoded; only meaningful where the class target is positive).
    """
    num_anchors = tf.shape(anchors)[0]

    def with_boxes():
        iou = pairwise_iou(anchors, boxes)  # [A, G]
        best_box = tf.argmax(iou, axis=1, output_type=tf.int32)
        best_iou = tf.reduce_max(iou, axis=1)
        # Every box gets its best anchor, however low the overlap (small or odd-shaped objects).
        best_anchor_per_box = tf.argmax(iou, axis=0, output_type=tf.int32)  # [G]
        # box index + 1 per anchor (0 = none); when two boxes pick the same anchor the later one keeps it
        forced = tf.tensor_scatter_nd_max(tf.zeros([num_anchors], tf.int32), best_anchor_per_box[:, None],
                                          tf.range(1, tf.shape(boxes)[0] + 1))
        matched_box = tf.where(forced > 0, forced - 1, best_box)
        positive = tf.logical_or(forced > 0, best_iou >= MATCH_THRESHOLD)
        ignored = tf.logical_and(~positive, best_iou >= UNMATCHED_THRESHOLD)
        class_targets = tf.where(positive, tf.gather(classes, matched_box),
                                 tf.where(ignored, IGNORED, BACKGROUND))
        box_targets = encode_boxes(tf.gather(boxes, matched_box), anchors)
        box_targets = tf.where(positive[:, None], box_targets, 0.0)
        return tf.cast(class_targets, tf.int32), box_targets

    def without_boxes():
        return tf.fill([num_anchors], BACKGROUND), tf.zeros([num_anchors, 4], tf.float32)

    return tf.cond(tf.shape(boxes)[0] > 0, with_boxes, without_boxes)
