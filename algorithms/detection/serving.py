"""The detection serving module: the signature of the built-in detection algorithm (export/signatures.py)."""

import keras
import tensorflow as tf

from dataloaders import image_ops
from export.signatures import ServingModule


class DetectionServing(ServingModule):
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
        return self.with_class_names({"serving_default": self.serve.get_concrete_function()})
