"""RetinaNet (Lin et al. 2017): ResNet backbone, FPN or NAS-FPN, shared class and box subnets over the
pyramid levels, and the post-processing (box decoding + per-class NMS) that evaluation and serving share.

The FPN and the two subnets are KerasHub's layers; the class subnet gets the focal-loss prior bias
(KerasHub's RetinaNetObjectDetector puts it on the box subnet instead, which makes from-scratch training
start from p=0.5 on every anchor).
"""

import keras
import tensorflow as tf

# Private KerasHub paths on purpose: KerasHub 0.32 exports these two layers only inside RetinaNetObjectDetector,
# whose prior bias sits on the box head and whose NMS cannot export with a dynamic batch. keras-hub is pinned
# exactly in requirements/runtime.in, and tests build both layers, so a move upstream fails the tests, not a job.
from keras_hub.src.models.retinanet.feature_pyramid import FeaturePyramid
from keras_hub.src.models.retinanet.prediction_head import PredictionHead

from algorithms import backbones
from algorithms.detection import anchors as anchor_ops
from algorithms.detection.nasfpn import NASFPN
from algorithms.detection.params import DetectionParams

PYRAMID_FILTERS = 256
SUBNET_CONV_LAYERS = 4
PRIOR_PROBABILITY = 0.01
# The paper's subnet initialisation; KerasHub's default (stddev 0.05) gives logits in the tens at step 0.
SUBNET_KERNEL_INITIALIZER = {"class_name": "RandomNormal", "config": {"stddev": 0.01}}
# Candidates kept per image (highest class score) before NMS, as upstream's pre_nms_num_boxes.
PRE_NMS_TOP_K = 5000


class RetinaNet(keras.Model):
    """0..255 images [b, H, W, 3] (H, W = params.padded_size) ->
    {"class_logits": float32 [b, anchors, num_classes], "box_deltas": float32 [b, anchors, 4]}."""

    def __init__(self, params: DetectionParams, num_classes: int, **kwargs):
        height, width = params.padded_size
        anchors_per_location = params.anchors_per_location
        encoder = backbones.build_resnet_encoder(params.resnet_depth, (height, width, 3))
        levels = [f"P{level}" for level in range(params.min_level, 6)]
        pyramid = keras.Model(encoder.inputs, {name: encoder.pyramid_outputs[name] for name in levels},
                              name=f"resnet{params.resnet_depth}_pyramid")
        images = keras.Input((height, width, 3), name="images")
        backbone = keras.Model(images, pyramid(backbones.imagenet_normalization()(images)), name="backbone")
        if params.fpn_type == "nasfpn":
            decoder = NASFPN(PYRAMID_FILTERS, params.nasfpn_num_repeats, name="nasfpn")
        else:
            decoder = FeaturePyramid(min_level=params.min_level, max_level=params.max_level, use_p5=False,
                                     num_filters=PYRAMID_FILTERS, name="fpn")
        class_head = PredictionHead(anchors_per_location * num_classes, PYRAMID_FILTERS, SUBNET_CONV_LAYERS,
                                    use_prior_probability=True, prior_probability=PRIOR_PROBABILITY,
                                    kernel_initializer=SUBNET_KERNEL_INITIALIZER, name="class_subnet")
        box_head = PredictionHead(anchors_per_location * 4, PYRAMID_FILTERS, SUBNET_CONV_LAYERS,
                                  kernel_initializer=SUBNET_KERNEL_INITIALIZER, name="box_subnet")
        features = decoder(backbone(images))
        class_logits, box_deltas = [], []
        for level in range(params.min_level, params.max_level + 1):
            # The subnets are shared by every level; [b, h, w, anchors * k] -> [b, h * w * anchors, k].
            feature = features[f"P{level}"]
            class_logits.append(keras.layers.Reshape((-1, num_classes))(class_head(feature)))
            box_deltas.append(keras.layers.Reshape((-1, 4))(box_head(feature)))
        outputs = {
            "class_logits": keras.layers.Activation("linear", dtype="float32", name="class_logits")(
                keras.layers.Concatenate(axis=1)(class_logits)),
            "box_deltas": keras.layers.Activation("linear", dtype="float32", name="box_deltas")(
                keras.layers.Concatenate(axis=1)(box_deltas)),
        }
        super().__init__(inputs=images, outputs=outputs, **kwargs)
        self.num_classes = num_classes
        self.backbone, self.decoder, self.class_head, self.box_head = backbone, decoder, class_head, box_head


def model_anchors(params: DetectionParams):
    """The anchors of the model's input size, in the order of its outputs."""
    return anchor_ops.generate_anchors(params.padded_size, params.min_level, params.max_level,
                                       params.anchor_num_scales, params.aspect_ratios, params.anchor_size)


def postprocess(outputs: dict, anchors: tf.Tensor, scaled_sizes: tf.Tensor, params: DetectionParams) -> dict:
    """Raw outputs -> the documented detections, per image of the batch.

    scaled_sizes [b, 2]: (height, width) the original image took inside the model input; boxes are divided by
    it, which maps them back to the original image's normalized coordinates.
    Returns boxes [b, N, 4] in [0, 1], scores [b, N], classes [b, N] float32 1-based, num_detections [b] int32;
    rows past num_detections are zeros.
    """
    logits, deltas = outputs["class_logits"], outputs["box_deltas"]
    num_candidates = min(PRE_NMS_TOP_K, int(anchors.shape[0]))
    best_scores = tf.reduce_max(logits, axis=-1)
    _, candidates = tf.math.top_k(best_scores, k=num_candidates, sorted=False)  # [b, k]
    boxes = anchor_ops.decode_boxes(tf.gather(deltas, candidates, batch_dims=1), tf.gather(anchors, candidates))
    scores = tf.sigmoid(tf.gather(logits, candidates, batch_dims=1))
    scale = tf.tile(tf.cast(scaled_sizes, tf.float32), [1, 2])[:, None, :]
    boxes = tf.clip_by_value(boxes / scale, 0.0, 1.0)
    n = params.max_detections
    nms_boxes, nms_scores, nms_classes, count = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores, max_output_size_per_class=n, max_total_size=n,
        iou_threshold=params.nms_iou_threshold, score_threshold=params.nms_score_threshold, clip_boxes=False)
    valid = tf.sequence_mask(count, n, dtype=tf.float32)
    return {"boxes": nms_boxes, "scores": nms_scores, "classes": (nms_classes + 1.0) * valid, "num_detections": count}
