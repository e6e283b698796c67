"""`python entrypoint.py predict --model_dir=... --input=IMAGE|DIR|GLOB`: try an exported model on images.

A real client of the exported signature: it sends the raw file bytes to `serving_default`, as AI Platform
Prediction would, and prints one JSON line per image: the top-k classes of a classifier, or the boxes of a
detector scoring at least --min_score (names when the model carries labels.txt). `--output_images=DIR` also
writes each image with its top prediction or its boxes drawn on it.
"""

import json
import os
import sys

from absl import flags

from core.errors import UserInputError
from dataloaders.labels import LABELS_FILE_NAME, read_labels_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("model_dir", None, "An exported model directory (local or gs://). Required.", flag_values=fv)
    flags.DEFINE_string("input", None, "An image file, a directory of images, or a glob. Required.", flag_values=fv)
    flags.DEFINE_integer("top_k", 5, "Classes to print per image (classifiers).", flag_values=fv)
    flags.DEFINE_float("min_score", 0.3, "Lowest detection score to print (detectors).", flag_values=fv)
    flags.DEFINE_integer("batch_size", 16, "Images per call of the model.", flag_values=fv)
    flags.DEFINE_string("output_images", None, "Directory to write the images with their top prediction drawn.", flag_values=fv)


def find_images(pattern: str) -> list[str]:
    import tensorflow as tf

    if tf.io.gfile.isdir(pattern):
        paths = [f"{pattern.rstrip('/')}/{name}" for name in tf.io.gfile.listdir(pattern)]
    else:
        paths = tf.io.gfile.glob(pattern)
    images = sorted(p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise UserInputError(f"--input={pattern} matches no image ({', '.join(IMAGE_EXTENSIONS)})")
    return images


def _class_names(model, model_dir: str) -> list[str] | None:
    import tensorflow as tf

    if "class_names" in model.signatures:
        return [n.decode() for n in model.signatures["class_names"]()["class_names"].numpy()]
    beside = f"{model_dir.rstrip('/')}/{LABELS_FILE_NAME}"
    return read_labels_file(beside) if tf.io.gfile.exists(beside) else None


def predict(model_dir: str, images: list[str], top_k: int = 5, batch_size: int = 16, min_score: float = 0.3):
    """Yields (path, predictions) per image. Classifier: [{"class": index, "label": index + 1, "name", "score"}]
    for the top_k classes. Detector: [{"box": [ymin, xmin, ymax, xmax] normalized, "label": 1-based, "name",
    "score"}] for the detections scoring at least min_score."""
    import numpy as np
    import tensorflow as tf

    try:
        model = tf.saved_model.load(model_dir)
    except (OSError, tf.errors.OpError) as error:
        raise UserInputError(f"--model_dir={model_dir} is not an exported model: {str(error).splitlines()[0]}") from None
    serve = model.signatures["serving_default"]
    image_input = "encoded_image" if "encoded_image" in serve.structured_input_signature[1] else "image_bytes"
    names = _class_names(model, model_dir)

    def name(label: int) -> str:
        return names[label - 1] if names and 0 < label <= len(names) else str(label)

    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        contents = [tf.io.gfile.GFile(path, "rb").read() for path in chunk]
        try:
            outputs = serve(**{image_input: tf.constant(contents)}, key=tf.constant(chunk))
        except tf.errors.InvalidArgumentError:
            raise UserInputError(f"one of {', '.join(chunk)} is not a decodable image") from None
        keys = [key.decode() for key in outputs["key"].numpy()]
        if image_input == "image_bytes":
            for key, row in zip(keys, outputs["probabilities"].numpy()):
                best = np.argsort(-row, kind="stable")[:top_k]
                yield key, [{"class": int(i), "label": int(i) + 1, "name": name(int(i) + 1),
                             "score": round(float(row[i]), 6)} for i in best]
            continue
        for i, key in enumerate(keys):
            count = int(outputs["num_detections"][i])
            yield key, [{"box": [round(float(v), 5) for v in box], "label": int(label), "name": name(int(label)),
                         "score": round(float(score), 6)}
                        for box, label, score in zip(outputs["detection_boxes"][i][:count].numpy(),
                                                     outputs["detection_classes"][i][:count].numpy(),
                                                     outputs["detection_scores"][i][:count].numpy())
                        if score >= min_score]


def draw(path: str, predictions: list, output_dir: str) -> str:
    import io

    import tensorflow as tf
    from PIL import Image, ImageDraw

    image = Image.open(io.BytesIO(tf.io.gfile.GFile(path, "rb").read())).convert("RGB")
    canvas = ImageDraw.Draw(image)
    width, height = image.size
    if predictions and "box" not in predictions[0]:
        predictions = predictions[:1]  # a classifier: its top class in the corner
    for prediction in predictions:
        ymin, xmin, ymax, xmax = prediction.get("box", (0, 0, 0, 0))
        if "box" in prediction:
            canvas.rectangle((xmin * width, ymin * height, xmax * width, ymax * height), outline=(255, 255, 0), width=2)
        text = f"{prediction['name']} {prediction['score']:.2f}"
        origin = (xmin * width + 2, ymin * height + 2)
        box = canvas.textbbox(origin, text)
        canvas.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
        canvas.text(origin, text, fill=(255, 255, 0))
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
    image.save(target)
    return target


def main(argv: list[str]) -> int:
    fv = flags.FlagValues()
    define_flags(fv)
    try:
        fv(["predict", *argv])
        for name in ("model_dir", "input"):
            if not fv[name].value:
                raise UserInputError(f"predict needs --{name}")
        for path, predictions in predict(fv.model_dir, find_images(fv.input), fv.top_k, fv.batch_size,
                                          fv.min_score):
            line = {"image": path, "predictions": predictions}
            if fv.output_images:
                line["drawn"] = draw(path, predictions, fv.output_images)
            print(json.dumps(line))
    except flags.Error as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    except UserInputError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 0
