"""Image decode / crop / resize: ONE implementation used by the tf.data pipelines and the serving graphs.

Images leave these functions as float32 RGB in 0..255; every model normalises inside its own graph, so the
serving signature feeds it exactly what training fed it.
"""

import tensorflow as tf

# Fraction of the shorter side kept by the evaluation/serving centre crop (224/256, the ImageNet habit).
EVAL_CENTER_CROP_FRACTION = 0.875


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes -> uint8 [h, w, 3]; grayscale and RGBA become RGB."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _resize(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    image = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")
    image = tf.clip_by_value(image, 0.0, 255.0)
    image.set_shape([height, width, 3])
    return image


def center_crop_and_resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Deterministic evaluation view: a centred square crop of the shorter side, resized."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    crop = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * EVAL_CENTER_CROP_FRACTION, tf.int32)
    crop = tf.maximum(crop, 1)
    offset_y = (height - crop) // 2
    offset_x = (width - crop) // 2
    image = tf.image.crop_to_bounding_box(image, offset_y, offset_x, crop, crop)
    return _resize(image, image_size, image_size)


def random_crop_and_resize(image: tf.Tensor, image_size: int,
                           area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3)) -> tf.Tensor:
    """Inception-style training crop: a random box of 8-100% of the area and 3/4-4/3 aspect, resized."""
    shape = tf.shape(image)
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=whole_image, min_object_covered=0.1, aspect_ratio_range=aspect_ratio_range,
        area_range=area_range, max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    return _resize(image, image_size, image_size)


def preprocess_for_eval(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Bytes -> float32 [image_size, image_size, 3] in 0..255 (evaluation and serving)."""
    return center_crop_and_resize(decode_rgb(encoded), image_size)


def preprocess_for_train(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Bytes -> randomly cropped and flipped float32 [image_size, image_size, 3] in 0..255."""
    image = random_crop_and_resize(decode_rgb(encoded), image_size)
    return tf.image.random_flip_left_right(image)
