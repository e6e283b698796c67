"""Flags of the image classification algorithm (on top of algorithms/runtime/flags.py)."""

from absl import flags

from algorithms import backbones
from algorithms.classification.params import ClassificationParams
from algorithms.runtime.flags import FRACTION_BELOW_ONE, NON_NEGATIVE, POSITIVE, Range
from core.errors import UserInputError

DEFAULT_MODEL_TYPE = "efficientnet-b0"


# Checked with the shared flags' ranges (algorithms/runtime/flags.py) before read_params.
FLAG_RANGES = {
    "label_smoothing": FRACTION_BELOW_ONE, "dropout_rate": FRACTION_BELOW_ONE, "regularizers_l2": NON_NEGATIVE,
    "fine_tune_after_steps": Range(0, note="0 = never"), "validation_split_ratio": Range(0.0, 1.0, low_open=True, high_open=True),
    "fine_tune_learning_rate": POSITIVE, "crop_min_area": Range(0.0, 1.0, low_open=True),
}


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("model_type", DEFAULT_MODEL_TYPE, f"Backbone: {', '.join(backbones.MODEL_TYPES)}.", flag_values=fv)
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the softmax cross-entropy, in [0, 1).", flag_values=fv)
    flags.DEFINE_string("pretrained_weights", None, "Backbone weights to start from: 'imagenet' (keras.applications / KerasHub, downloaded or from their cache), a .weights.h5 file, a KerasHub preset dir, or a checkpoint/job/model dir of this trainer (local or gs://).", flag_values=fv)
    flags.DEFINE_float("dropout_rate", None, "Dropout before the dense head, in [0, 1); default: the backbone's (0.2-0.5 for EfficientNets, 0 for ResNets).", flag_values=fv)
    flags.DEFINE_float("regularizers_l2", 0.0, "L2 factor on the dense head's kernel (on top of --weight_decay).", flag_values=fv)
    flags.DEFINE_bool("train_only_top_layer", False, "Freeze the backbone (BatchNorm in inference mode) and train only the head.", flag_values=fv)
    flags.DEFINE_integer("fine_tune_after_steps", 0, "With --train_only_top_layer: after this many steps, unfreeze the whole network (0 = never).", flag_values=fv)
    flags.DEFINE_float("validation_split_ratio", 0.2, "Class-folder input without --validation_data_path: share of the images held out (seeded by path).", flag_values=fv)
    flags.DEFINE_float("crop_min_area", 0.08, "Training crops cover this share of the image's area at least (Inception-style random crops of 3/4-4/3 aspect, then resized); 1 = the whole image, flipped only.", flag_values=fv)
    flags.DEFINE_float("fine_tune_learning_rate", None, "Constant learning rate once the whole network trains; default initial_learning_rate/10.", flag_values=fv)


def parse_image_size(text: str | None, model_type: str) -> int:
    if text is None or not str(text).strip():
        return backbones.spec(model_type).native_size
    parts = [p.strip() for p in str(text).split(",")]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise UserInputError(f"--image_size={text!r} must be an integer number of pixels, e.g. --image_size=224") from None
    if len(sizes) == 2 and sizes[0] != sizes[1] or len(sizes) > 2:
        raise UserInputError(f"--image_size={text!r}: classification trains on square images; give one number")
    return sizes[0]


def read_params(fv: flags.FlagValues) -> ClassificationParams:
    model_type = backbones.spec(fv.model_type).name  # refused here, with the list, when unknown
    if fv.fine_tune_after_steps and not fv.train_only_top_layer:
        raise UserInputError("--fine_tune_after_steps switches from training the head alone to the whole network; "
                             "it needs --train_only_top_layer=true for the first phase")
    return ClassificationParams(model_type=model_type, image_size=parse_image_size(fv.image_size, model_type),
                                label_smoothing=fv.label_smoothing,
                                pretrained_weights=(fv.pretrained_weights or "").strip() or None,
                                dropout_rate=fv.dropout_rate, regularizers_l2=fv.regularizers_l2,
                                train_only_top_layer=fv.train_only_top_layer,
                                fine_tune_after_steps=fv.fine_tune_after_steps,
                                fine_tune_learning_rate=fv.fine_tune_learning_rate, crop_min_area=fv.crop_min_area,
                                validation_split_ratio=fv.validation_split_ratio)
