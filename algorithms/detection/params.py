"""The detector's typed parameters, read once from the flags and checked before anything runs."""

import dataclasses

from algorithms.backbones import detection_depths
from core.errors import UserInputError

FPN_TYPES = ("fpn", "nasfpn")
# The NAS-FPN cell (Ghiasi et al. 2019) was searched for exactly these pyramid levels.
NASFPN_LEVELS = (3, 7)
DEFAULT_ANCHOR_SIZE = 4.0  # upstream RetinaNet's
# The share of training boxes that should have an anchor at IoU >= 0.5 (YOLO's auto-anchor asks the same); under
# it, an unset --anchor_size is fitted to the boxes (algorithms/detection/anchor_fit.py).
ANCHOR_FIT_GOAL = 0.98


@dataclasses.dataclass(frozen=True)
class DetectionParams:
    image_size: tuple  # (height, width) the image is fitted into, aspect ratio kept
    resnet_depth: int
    fpn_type: str
    min_level: int
    max_level: int
    nasfpn_num_repeats: int
    anchor_size: float
    anchor_num_scales: int
    aspect_ratios: tuple  # width / height
    max_boxes_in_training: int
    max_detections: int
    nms_iou_threshold: float
    nms_score_threshold: float
    focal_loss_alpha: float
    focal_loss_gamma: float
    box_loss_weight: float
    random_flip: bool
    scale_min: float
    scale_max: float
    auto_augmentation: bool
    # --anchor_size left unset: the task may replace anchor_size by one that fits the training boxes (anchor_fit).
    anchor_size_from_data: bool = False

    @property
    def padded_size(self) -> tuple:
        """The model's input size: image_size rounded up to a multiple of the coarsest stride 2^max_level."""
        stride = 2 ** self.max_level
        return tuple(-(-side // stride) * stride for side in self.image_size)

    @property
    def anchors_per_location(self) -> int:
        return self.anchor_num_scales * len(self.aspect_ratios)

    def validate(self) -> None:
        if self.resnet_depth not in detection_depths():
            raise UserInputError(f"--resnet_depth={self.resnet_depth} is not supported; use one of "
                                 f"{', '.join(map(str, detection_depths()))}")
        if self.fpn_type not in FPN_TYPES:
            raise UserInputError(f"--fpn_type={self.fpn_type!r} is not supported; use fpn or nasfpn")
        if not 2 <= self.min_level <= 5 or self.max_level < max(self.min_level, 5) or self.max_level > 8:
            raise UserInputError(f"--fpn_min_level={self.min_level} --fpn_max_level={self.max_level}: the levels must "
                                 "satisfy 2 <= min <= 5 <= max <= 8 (the backbone gives levels 2-5, coarser ones are added)")
        if self.fpn_type == "nasfpn" and (self.min_level, self.max_level) != NASFPN_LEVELS:
            raise UserInputError(f"--fpn_type=nasfpn is defined for levels {NASFPN_LEVELS[0]}-{NASFPN_LEVELS[1]}; "
                                 f"drop --fpn_min_level/--fpn_max_level or use --fpn_type=fpn")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise UserInputError("--bbox_aspect_ratios must be a comma list of positive width/height ratios, e.g. 1.0,2.0,0.5")
        if not 0 < self.scale_min <= 1.0 <= self.scale_max:
            raise UserInputError(f"--aug_scale_min={self.scale_min} --aug_scale_max={self.scale_max}: need "
                                 "0 < aug_scale_min <= 1 <= aug_scale_max")
        if min(self.image_size) < 2 ** self.max_level:
            raise UserInputError(f"--image_size={self.image_size[0]},{self.image_size[1]} is smaller than the coarsest "
                                 f"stride 2^{self.max_level}={2 ** self.max_level}; enlarge it or lower --fpn_max_level")
