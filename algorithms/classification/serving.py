"""The classification serving module: the signature of the built-in classification algorithm (export/signatures.py)."""

import keras
import tensorflow as tf

from dataloaders import image_ops
from export.signatures import ServingModule


class ClassificationServing(ServingModule):
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
        return self.with_class_names({"serving_default": concrete, "classify": concrete})
