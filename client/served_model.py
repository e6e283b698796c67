"""An exported model as its clients call it: loaded once, its `serving_default` fed encoded image bytes and keys,
as AI Platform Prediction would, and what every client checks of an image before sending it. Shared by `predict`
(one process), `batch_predict` (Beam workers) and `serve` (an HTTP server). TensorFlow is imported only when a
model is loaded."""

import dataclasses
import io

from core.errors import UserInputError, first_line, op_error_reason

# What the serving signature decodes (tf.io.decode_image); PIL names them so.
SERVED_FORMATS = ("JPEG", "PNG", "GIF", "BMP")


@dataclasses.dataclass(frozen=True)
class Instance:
    """One input ready for the model: encoded bytes the model can decode, and the image's size in pixels."""
    key: str
    content: bytes
    height: int
    width: int


@dataclasses.dataclass(frozen=True)
class Failure:
    """An input that cannot be predicted: its key, a reason code (counted) and what went wrong."""
    input: str
    reason: str
    error: str


def failure(key: str, reason: str, error: str) -> Failure:
    return Failure(input=key, reason=reason, error=error[:500])


def check_image(key: str, content: bytes, max_pixels: int | None = None) -> Instance | Failure:
    """Encoded bytes -> an Instance when the header is a format the model decodes (and, given `max_pixels`,
    names no more pixels than that), else the Failure: from the header alone, nothing is decoded here."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            image_format, (width, height) = image.format, image.size
    except UnidentifiedImageError:
        return failure(key, "not_an_image", f"not an image: no {', '.join(SERVED_FORMATS)} header "
                                            f"({len(content)} bytes)")
    except Image.DecompressionBombError as error:  # far over any model's pixel limit: never decoded
        return failure(key, "not_decodable", f"too many pixels: {first_line(error)}")
    except (OSError, ValueError, SyntaxError) as error:  # PIL's errors on a damaged header
        return failure(key, "not_an_image", f"a damaged image header: {first_line(error)}")
    if image_format not in SERVED_FORMATS:
        return failure(key, "unsupported_format", f"a {image_format} image; the model decodes "
                                                  f"{', '.join(SERVED_FORMATS)} (convert it to JPEG)")
    if max_pixels and width * height > max_pixels:
        return failure(key, "not_decodable", f"too many pixels: {width}x{height} is {width * height:,} pixels, more "
                                             f"than --max_image_pixels={max_pixels:,}")
    return Instance(key=key, content=content, height=height, width=width)


class ServedModel:
    """`serving_default` of an exported model, the task it belongs to (classification or detection, from the
    signature's outputs) and its class names (the `class_names` signature, else labels.txt beside it)."""

    def __init__(self, model_dir: str):
        import tensorflow as tf

        from algorithms import registry

        try:
            self._model = tf.saved_model.load(model_dir)
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise UserInputError(f"--model_dir={model_dir} is not an exported model: {first_line(error)}") from None
        if "serving_default" not in self._model.signatures:
            raise UserInputError(f"--model_dir={model_dir} has no serving_default signature "
                                 f"(signatures: {', '.join(self._model.signatures) or 'none'})")
        self.serve = self._model.signatures["serving_default"]
        self.task = registry.task_of_signature(self.serve.structured_outputs)
        self.class_names = self._class_names(model_dir)

    def _class_names(self, model_dir: str) -> list[str] | None:
        import tensorflow as tf

        from dataloaders.labels import LABELS_FILE_NAME, read_labels_file

        if "class_names" in self._model.signatures:
            return [n.decode() for n in self._model.signatures["class_names"]()["class_names"].numpy()]
        beside = f"{model_dir.rstrip('/')}/{LABELS_FILE_NAME}"
        return read_labels_file(beside) if tf.io.gfile.exists(beside) else None

    def name(self, label: int) -> str:
        """The name of 1-based `label` (the label itself as text when the model carries no names)."""
        names = self.class_names
        return names[label - 1] if names and 0 < label <= len(names) else str(label)

    def call(self, keys: list[str], contents: list[bytes]) -> list:
        """One row of outputs ({output name: numpy value}) per image, in order; an image the model cannot decode
        gets the reason (a str) instead, and the others are served all the same: when one image breaks a batch,
        each image of that batch is served on its own."""
        import tensorflow as tf

        try:
            outputs = self.serve(**{self.task.serving_image_input: tf.constant(contents)}, key=tf.constant(keys))
            outputs = {name: value.numpy() for name, value in outputs.items()}
            return [{name: value[i] for name, value in outputs.items()} for i in range(len(keys))]
        except tf.errors.InvalidArgumentError as error:
            if len(keys) == 1:
                return [f"not a decodable image (JPEG, PNG, GIF or BMP within the model's pixel limit): "
                        f"{op_error_reason(error)}"]
            return [row for key, content in zip(keys, contents) for row in self.call([key], [content])]

    def format(self, row: dict, options: dict) -> list:
        """The task's predictions of one row (TaskSpec.format_prediction): a classifier's top classes, a
        detector's boxes (normalized [ymin, xmin, ymax, xmax]), each with its 1-based label and name."""
        return self.task.format_prediction(row, self.name, options)

    def result(self, instance: Instance, row, options: dict):
        """The answer for one served row: {"key", "predictions"} (a detector's boxes in the input image's pixels,
        with "box_normalized" and the "image_size" they refer to), or a Failure when the model could not decode
        the image."""
        if isinstance(row, str):
            return failure(instance.key, "not_decodable", row)
        predictions = self.format(row, options)
        if self.task.name != "detection":
            return {"key": instance.key, "predictions": predictions}
        scale = (instance.height, instance.width, instance.height, instance.width)
        for prediction in predictions:
            normalized = prediction.pop("box")
            prediction["box"] = [round(value * size, 2) for value, size in zip(normalized, scale)]
            prediction["box_normalized"] = normalized
        return {"key": instance.key, "image_size": [instance.height, instance.width], "predictions": predictions}
