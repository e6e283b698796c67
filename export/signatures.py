"""Serving modules with exactly the signatures the built-in algorithms document (input and output names,
dtypes and shapes below), so models deploy and are called as Google's were.

They decode and resize with dataloaders.image_ops, the same code the training pipeline uses, and hold only the
model's weights (a never-compiled copy: no optimizer slots in the SavedModel).
"""

import os
import tempfile

import keras
import tensorflow as tf

from core.variables import trackable_variables
from dataloaders import image_ops
from dataloaders.labels import LABELS_FILE_NAME


class _ServingModule(tf.Module):
    """What both serving modules share: the model's variables (by path, see trackable_variables) and, when
    class names are known, labels.txt in the assets plus a `class_names` signature returning them in order.

    The Keras model itself is only captured by the serving closures, not tracked: TensorFlow's object graph
    would miss some of its variables, so the SavedModel holds `model`, the complete variable set, instead.
    """

    def __init__(self, model: keras.Model, class_names: list[str] | None, name: str):
        super().__init__(name=name)
        self.model = trackable_variables(model)
        self.names = None
        if class_names:
            # The asset's source file must outlive the exports of this module, not the job: removed with it.
            self._labels_folder = tempfile.TemporaryDirectory(prefix="labels-")
            labels_path = os.path.join(self._labels_folder.name, LABELS_FILE_NAME)
            with open(labels_path, "w") as handle:
                handle.write("\n".join(class_names) + "\n")
            self.labels_asset = tf.saved_model.Asset(labels_path)
            self.class_name_values = tf.constant(class_names)
            self.names = tf.function(lambda: {"class_names": tf.identity(self.class_name_values)}, input_signature=[])

    def _with_class_names(self, signatures: dict) -> dict:
        if self.names is not None:
            signatures["class_names"] = self.names.get_concrete_function()
        return signatures


class ClassificationServing(_ServingModule):
    """serving_default (and its alias `classify`):
    inputs  image_bytes string [-1], key string [-1]
    outputs classes int64 [-1] (0-based index into probabilities), probabilities float32 [-1, num_classes],
            key string [-1] (echoed)
    and, when class names are known, `class_names` (no inputs) -> class_names string [num_classes].
    """

    def __init__(self, model: keras.Model, image_size: int, class_names: list[str] | None = None,
                 max_pixels: int = image_ops.DEFAULT_MAX_IMAGE_PIXELS):
        super().__init__(model, class_names, name="classification_serving")

        def serve(image_bytes, key):
            images = tf.map_fn(lambda encoded: image_ops.preprocess_for_eval(encoded, image_size, max_pixels), image_bytes,
                               fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
            probabilities = tf.nn.softmax(tf.cast(model(images, training=False), tf.float32), axis=-1)
            return {
                "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
                "probabilities": tf.identity(probabilities, name="probabilities"),
                "key": tf.identity(key, name="key"),
            }

        self.serve = tf.function(serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes"), tf.TensorSpec([None], tf.string, name="key")])

    def serving_signatures(self) -> dict:
        concrete = self.serve.get_concrete_function()
        return self._with_class_names({"serving_default": concrete, "classify": concrete})


class DetectionServing(_ServingModule):
    """serving_default:
    inputs  encoded_image string [-1] (any size; fitted into the model input, aspect ratio kept), key string [-1]
    outputs detection_boxes float32 [-1, N, 4] ([ymin, xmin, ymax, xmax] normalized to the original image),
            detection_classes float32 [-1, N] (1-based), detection_scores float32 [-1, N],
            num_detections float32 [-1], key string [-1] (echoed); rows past num_detections are zeros
    and, when class names are known, `class_names` -> class_names string [num_classes] (name of class i+1 at i).

    detect(images, scaled_sizes) -> {"boxes", "scores", "classes", "num_detections"} is the task's own
    post-processing (the same one its evaluation uses).
    """

    def __init__(self, model: keras.Model, detect, image_size, padded_size, class_names: list[str] | None = None,
                 max_pixels: int = image_ops.DEFAULT_MAX_IMAGE_PIXELS):
        super().__init__(model, class_names, name="detection_serving")
        height, width = padded_size

        def serve(encoded_image, key):
            images, scaled_sizes = tf.map_fn(
                lambda encoded: image_ops.fit_and_pad(encoded, image_size, padded_size, max_pixels), encoded_image,
                fn_output_signature=(tf.TensorSpec([height, width, 3], tf.float32), tf.TensorSpec([2], tf.float32)))
            detections = detect(images, scaled_sizes)
            return {
                "detection_boxes": tf.identity(detections["boxes"], name="detection_boxes"),
                "detection_classes": tf.identity(detections["classes"], name="detection_classes"),
                "detection_scores": tf.identity(detections["scores"], name="detection_scores"),
                "num_detections": tf.cast(detections["num_detections"], tf.float32, name="num_detections"),
                "key": tf.identity(key, name="key"),
            }

        self.serve = tf.function(serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="encoded_image"), tf.TensorSpec([None], tf.string, name="key")])

    def serving_signatures(self) -> dict:
        return self._with_class_names({"serving_default": self.serve.get_concrete_function()})
