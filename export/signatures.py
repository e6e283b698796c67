"""Serving modules with exactly the documented signatures (reference decision 3).

They decode and resize with data.image_ops, the same code the training pipeline uses, and hold only the
model's weights (a never-compiled copy: no optimizer slots in the SavedModel).
"""

import os
import tempfile

import keras
import tensorflow as tf

from data import image_ops
from data.labels import LABELS_FILE_NAME


class ClassificationServing(tf.Module):
    """serving_default (and its alias `classify`):
    inputs  image_bytes string [-1], key string [-1]
    outputs classes int64 [-1] (0-based index into probabilities), probabilities float32 [-1, num_classes],
            key string [-1] (echoed)
    and, when class names are known, `class_names` (no inputs) -> class_names string [num_classes].
    """

    def __init__(self, model: keras.Model, image_size: int, class_names: list[str] | None = None):
        super().__init__(name="classification_serving")
        self.model = model
        self.image_size = image_size
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes"), tf.TensorSpec([None], tf.string, name="key")])
        self.names = None
        if class_names:
            # labels.txt travels in the SavedModel's assets; `class_names` returns the names in probability order.
            labels_path = os.path.join(tempfile.mkdtemp(prefix="labels-"), LABELS_FILE_NAME)
            with open(labels_path, "w") as handle:
                handle.write("\n".join(class_names) + "\n")
            self.labels_asset = tf.saved_model.Asset(labels_path)
            self.class_name_values = tf.constant(class_names)
            self.names = tf.function(lambda: {"class_names": tf.identity(self.class_name_values)}, input_signature=[])

    def serving_signatures(self) -> dict:
        concrete = self.serve.get_concrete_function()
        signatures = {"serving_default": concrete, "classify": concrete}
        if self.names is not None:
            signatures["class_names"] = self.names.get_concrete_function()
        return signatures

    def _serve(self, image_bytes, key):
        size = self.image_size
        images = tf.map_fn(lambda encoded: image_ops.preprocess_for_eval(encoded, size), image_bytes,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        logits = self.model(images, training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        return {
            "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
            "probabilities": tf.identity(probabilities, name="probabilities"),
            "key": tf.identity(key, name="key"),
        }
