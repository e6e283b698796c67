"""Flags of the built-in object detection algorithm, on top of algorithms/runtime/flags.py.

Where the built-in's docs are silent the defaults are those of the upstream RetinaNet config
(tensorflow/tpu models/official/detection, retinanet_config.py).
"""

from absl import flags

from algorithms.backbones import detection_depths
from algorithms.detection.params import ANCHOR_FIT_GOAL, DEFAULT_ANCHOR_SIZE, FPN_TYPES, DetectionParams
from algorithms.runtime.config import TrainingDefaults
from algorithms.runtime.flags import (
    AT_LEAST_ONE,
    FRACTION,
    FRACTION_BELOW_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Range,
    parse_number_list,
)
from core.errors import UserInputError

DEFAULT_IMAGE_SIZE = (640, 640)

# Upstream: momentum 0.9, 0.08 at batch 64 with warm-up from 0.0067, x0.1 at 15k and x0.01 at 20k of 22.5k steps
# (the same fractions are applied to --max_steps), gradients unclipped upstream; clipped here at 10 because
# from-scratch runs with small batches otherwise diverge in the first steps.
TRAINING_DEFAULTS = TrainingDefaults(
    decay_type="stepwise", learning_rate_per_256={"momentum": 0.08 * 256 / 64},
    warmup_learning_rate_fraction=0.0067 / 0.08, stepwise_step_fractions=(15000 / 22500, 20000 / 22500),
    stepwise_level_factors=(0.1, 0.01), gradient_clip_norm=10.0)

# Flags only the object-detection algorithm has: they route a job to detection when the data cannot say, and
# are refused on classification data (algorithms/registry.py). --resnet_depth is not one of them: on
# classification data it picks a ResNet classifier, as the TPU ResNet trainer's command line does.
DETECTION_ONLY_FLAGS = frozenset({
    "fpn_type", "fpn_min_level", "fpn_max_level", "anchor_size", "bbox_aspect_ratios",
    "max_num_bboxes_in_training", "max_num_bboxes_in_prediction", "nms_iou_threshold", "nms_score_threshold",
    "focal_loss_alpha", "focal_loss_gamma", "detection_loss_weight", "aug_rand_hflip", "aug_scale_min",
    "aug_scale_max", "auto_augmentation", "anchor_num_scales", "nasfpn_num_repeats"})


# Checked with the shared flags' ranges (algorithms/runtime/flags.py) before read_params; what ties several
# flags together is DetectionParams.validate's.
FLAG_RANGES = {
    "nasfpn_num_repeats": AT_LEAST_ONE, "anchor_size": POSITIVE, "anchor_num_scales": AT_LEAST_ONE,
    "max_num_bboxes_in_training": AT_LEAST_ONE, "max_num_bboxes_in_prediction": AT_LEAST_ONE,
    "nms_iou_threshold": Range(0.0, 1.0, low_open=True), "nms_score_threshold": FRACTION_BELOW_ONE,
    "focal_loss_alpha": FRACTION, "focal_loss_gamma": NON_NEGATIVE, "detection_loss_weight": NON_NEGATIVE,
}


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("resnet_depth", 50, f"ResNet depth: of the detection backbone ({', '.join(map(str, detection_depths()))}); on classification data, a ResNet classifier of that depth (same as --model_type=resnet-N).", flag_values=fv)
    flags.DEFINE_string("fpn_type", "fpn", f"Multi-level feature network: {', '.join(FPN_TYPES)}.", flag_values=fv)
    flags.DEFINE_integer("fpn_min_level", 3, "Finest pyramid level (stride 2^level) of the anchors and heads.", flag_values=fv)
    flags.DEFINE_integer("fpn_max_level", 7, "Coarsest pyramid level; images are padded to a multiple of 2^level.", flag_values=fv)
    flags.DEFINE_integer("nasfpn_num_repeats", 5, "NAS-FPN: how many times the searched cell is stacked.", flag_values=fv)
    flags.DEFINE_float("anchor_size", None, f"Anchor side relative to its level's stride; default {DEFAULT_ANCHOR_SIZE:g}, or, when that gives fewer than {ANCHOR_FIT_GOAL:.0%} of the training boxes an anchor at IoU >= 0.5, the size that fits the most of them (chosen from the first training records, logged, and kept for the job's reruns).", flag_values=fv)
    flags.DEFINE_integer("anchor_num_scales", 3, "Anchor scales per level (octave steps 2^(i/n)).", flag_values=fv)
    flags.DEFINE_string("bbox_aspect_ratios", "1.0,2.0,0.5", "Comma list of anchor width/height ratios.", flag_values=fv)
    flags.DEFINE_integer("max_num_bboxes_in_training", 100, "Ground-truth boxes per training image are cut to this many.", flag_values=fv)
    flags.DEFINE_integer("max_num_bboxes_in_prediction", 100, "Detections returned per image (N of the serving signature).", flag_values=fv)
    flags.DEFINE_float("nms_iou_threshold", 0.5, "Non-max suppression removes boxes overlapping a better one above this IoU.", flag_values=fv)
    flags.DEFINE_float("nms_score_threshold", 0.05, "Detections scoring below this are dropped.", flag_values=fv)
    flags.DEFINE_float("focal_loss_alpha", 0.25, "Focal loss weight of the positive anchors.", flag_values=fv)
    flags.DEFINE_float("focal_loss_gamma", 1.5, "Focal loss focusing exponent.", flag_values=fv)
    flags.DEFINE_float("detection_loss_weight", 50.0, "Weight of the box-regression loss relative to the class loss.", flag_values=fv)
    flags.DEFINE_bool("aug_rand_hflip", True, "Random horizontal flips of image and boxes in training.", flag_values=fv)
    flags.DEFINE_float("aug_scale_min", 1.0, "Lower bound of the training scale jitter, in (0, 1].", flag_values=fv)
    flags.DEFINE_float("aug_scale_max", 1.0, "Upper bound of the training scale jitter, >= 1.", flag_values=fv)
    flags.DEFINE_bool("auto_augmentation", False, "AutoAugment for detection, policy v0 (box-aware translate, shear, rotate; equalize, colour, sharpness, cutout).", flag_values=fv)


def parse_image_size(text: str | None) -> tuple[int, int]:
    if text is None or not str(text).strip():
        return DEFAULT_IMAGE_SIZE
    parts = [p.strip() for p in str(text).strip().split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise UserInputError(f"--image_size={text!r} must be \"HEIGHT,WIDTH\" in pixels, e.g. --image_size=640,640") from None
    if len(sizes) == 1:
        sizes = (sizes[0], sizes[0])
    if len(sizes) != 2 or min(sizes) < 32:
        raise UserInputError(f"--image_size={text!r} must be \"HEIGHT,WIDTH\" with both at least 32, e.g. 640,640")
    return sizes


def read_params(fv: flags.FlagValues) -> DetectionParams:
    params = DetectionParams(
        image_size=parse_image_size(fv.image_size), resnet_depth=fv.resnet_depth,
        fpn_type=(fv.fpn_type or "").strip().lower(), min_level=fv.fpn_min_level,
        max_level=fv.fpn_max_level, nasfpn_num_repeats=fv.nasfpn_num_repeats,
        anchor_size=DEFAULT_ANCHOR_SIZE if fv.anchor_size is None else fv.anchor_size,
        anchor_size_from_data=fv.anchor_size is None,
        anchor_num_scales=fv.anchor_num_scales,
        aspect_ratios=parse_number_list(fv.bbox_aspect_ratios, "bbox_aspect_ratios", float),
        max_boxes_in_training=fv.max_num_bboxes_in_training, max_detections=fv.max_num_bboxes_in_prediction,
        nms_iou_threshold=fv.nms_iou_threshold, nms_score_threshold=fv.nms_score_threshold,
        focal_loss_alpha=fv.focal_loss_alpha, focal_loss_gamma=fv.focal_loss_gamma,
        box_loss_weight=fv.detection_loss_weight, random_flip=fv.aug_rand_hflip, scale_min=fv.aug_scale_min,
        scale_max=fv.aug_scale_max, auto_augmentation=fv.auto_augmentation)
    params.validate()
    return params
