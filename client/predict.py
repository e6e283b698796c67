"""`python entrypoint.py predict --model_dir=... --input=IMAGE|DIR|GLOB`: try an exported model on images.

A real client of the exported signature: it sends the raw file bytes to `serving_default`, as AI Platform
Prediction would, and prints one JSON line per image: the top-k classes of a classifier, or the boxes of a
detector scoring at least --min_score (names when the model carries labels.txt). `--output_images=DIR` also
writes each image with its top prediction or its boxes drawn on it. A file that cannot be read or decoded gets
a line {"image": ..., "error": ...} (and one on stderr) while the others are predicted; the exit code is then 1.
Every line is valid JSON: a non-finite score is null.
"""

import json
import os
import sys

from absl import flags

from client.served_model import ServedModel
from core.errors import UserInputError, first_line

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


def predict(model_dir: str, images: list[str], top_k: int = 5, batch_size: int = 16, min_score: float = 0.3):
    """Yields (path, predictions, error) per image, in order; the predictions are the model's task's
    (TaskSpec.format_prediction): a classifier's top_k classes [{"class": index, "label": index + 1, "name",
    "score"}], a detector's detections scoring at least min_score [{"box": [ymin, xmin, ymax, xmax] normalized,
    "label": 1-based, "name", "score"}]. A file that cannot be read or decoded gets predictions None and the
    reason in `error`; the others are predicted all the same."""
    model = ServedModel(model_dir)
    options = {"top_k": top_k, "min_score": min_score}
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        read_back = {path: _read(path) for path in chunk}
        readable = [path for path in chunk if read_back[path][0] is not None]
        rows = dict(zip(readable, model.call(readable, [read_back[path][0] for path in readable]))) if readable else {}
        for path in chunk:
            row = rows.get(path, read_back[path][1])
            if isinstance(row, str):
                yield path, None, row if row.startswith("cannot read") else f"{path} is {row}"
            else:
                yield path, model.format(row, options), None


def _read(path: str):
    """(bytes, None), or (None, why) when the file cannot be read."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read(), None
    except (tf.errors.OpError, OSError) as error:
        return None, f"cannot read {path}: {first_line(error)}"


def draw(path: str, predictions: list, output_dir: str) -> str:
    import io

    import tensorflow as tf
    from PIL import Image, ImageDraw

    image = Image.open(io.BytesIO(tf.io.gfile.GFile(path, "rb").read())).convert("RGB")
    canvas = ImageDraw.Draw(image)
    width, height = image.size
    if predictions and "box" not in predictions[0]:
        predictions = predictions[:1]  # no boxes (a class, a value): the first prediction in the corner
    for prediction in predictions:
        ymin, xmin, ymax, xmax = prediction.get("box", (0, 0, 0, 0))
        if "box" in prediction:
            canvas.rectangle((xmin * width, ymin * height, xmax * width, ymax * height), outline=(255, 255, 0), width=2)
        text = " ".join(f"{value:.2f}" if isinstance(value, float) else str(value)
                        for key, value in prediction.items() if key in ("name", "score", "value"))
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
        for name in ("top_k", "batch_size"):
            if fv[name].value < 1:
                raise UserInputError(f"--{name}={fv[name].value} must be at least 1")
        failed = 0
        for path, predictions, error in predict(fv.model_dir, find_images(fv.input), fv.top_k, fv.batch_size,
                                                fv.min_score):
            if error:
                failed += 1
                print(json.dumps({"image": path, "error": error}))
                print(f"ERROR: {error}", file=sys.stderr)
                continue
            line = {"image": path, "predictions": predictions}
            if fv.output_images:
                line["drawn"] = draw(path, predictions, fv.output_images)
            print(json.dumps(line, allow_nan=False))
    except (flags.Error, UserInputError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 1 if failed else 0
