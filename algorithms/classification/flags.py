"""Flags of the image classification algorithm (on top of algorithms/runtime/flags.py)."""

from absl import flags

from algorithms.classification.model import MODEL_TYPES, native_image_size
from algorithms.classification.task import ClassificationParams
from algorithms.runtime.errors import UserInputError

DEFAULT_MODEL_TYPE = "efficientnet-b0"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("model_type", DEFAULT_MODEL_TYPE, f"Backbone: {', '.join(MODEL_TYPES)}.", flag_values=fv)
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the softmax cross-entropy, in [0, 1).", flag_values=fv)


def parse_image_size(text: str | None, model_type: str) -> int:
    if text is None or not str(text).strip():
        return native_image_size(model_type) if model_type in MODEL_TYPES else 224
    parts = [p.strip() for p in str(text).split(",")]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise UserInputError(f"--image_size={text!r} must be an integer number of pixels, e.g. --image_size=224") from None
    if len(sizes) == 2 and sizes[0] != sizes[1] or len(sizes) > 2:
        raise UserInputError(f"--image_size={text!r}: classification trains on square images; give one number")
    return sizes[0]


def read_params(fv: flags.FlagValues) -> ClassificationParams:
    model_type = (fv.model_type or "").strip().strip("'\"").lower()
    return ClassificationParams(model_type=model_type, image_size=parse_image_size(fv.image_size, model_type),
                                label_smoothing=fv.label_smoothing)
