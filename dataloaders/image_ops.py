"""Image decode / crop / resize: ONE implementation used by the tf.data pipelines and the serving graphs.

Images leave these functions as float32 RGB in 0..255; every model normalises inside its own graph, so the
serving signature feeds it exactly what training fed it.
"""

import tensorflow as tf

# Fraction of the shorter side kept by the evaluation/serving centre crop (224/256, the ImageNet habit).
EVAL_CENTER_CROP_FRACTION = 0.875
# The backbones normalise with these inside their graphs; detection pads with the mean (0 once normalised).
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STDDEV_RGB = (58.395, 57.12, 57.375)


# Decoding an image costs ~60 bytes per pixel at its peak (decode, float copy, crop, resize); 64 Mpx (8000 x
# 8000, more than most cameras) is then ~4 GB, which a 24 GiB machine survives with parallel decodes.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


def _unsigned(header: tf.Tensor, start: int, length: int, little_endian: bool) -> tf.Tensor:
    values = tf.cast(tf.io.decode_raw(tf.strings.substr(header, start, length), tf.uint8), tf.int64)
    weights = tf.constant([256 ** i for i in (range(length) if little_endian else reversed(range(length)))],
                          tf.int64)
    return tf.reduce_sum(values * weights)


# The smallest header tf.image.extract_jpeg_shape reads (SOI, a 1x1 SOF0, SOS, EOI). It stands in for bytes
# that are not a JPEG, so header_size needs no branch: the input pipelines run it inside a guarded decode,
# where every branch (a function) costs time on every record.
_STAND_IN_JPEG_HEADER = bytes.fromhex("ffd8ffc0000b080001000101011100ffda000801010000003f00ffd9")


def header_size(encoded: tf.Tensor) -> tf.Tensor:
    """(height, width) read from the header of JPEG, PNG, GIF or BMP bytes, without decoding (int64 [2]; zeros
    when the header is not one of these, so decoding decides). Fails like decoding on a corrupt JPEG header."""
    # The first 32 bytes, zero-padded for short files; only those are copied, never the whole image.
    header = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, 0, 32), tf.constant(b"\0" * 32)]), 0, 32)
    magic = tf.strings.substr(header, 0, 4)
    is_jpeg = tf.io.is_jpeg(encoded)
    jpeg = tf.cast(tf.image.extract_jpeg_shape(tf.where(is_jpeg, encoded, _STAND_IN_JPEG_HEADER)), tf.int64)[:2]
    png = tf.stack([_unsigned(header, 20, 4, False), _unsigned(header, 16, 4, False)])
    gif = tf.stack([_unsigned(header, 8, 2, True), _unsigned(header, 6, 2, True)])
    # BMP heights are negative for top-down rows: the magnitude of the signed 32-bit value.
    bmp = tf.stack([tf.abs((_unsigned(header, 22, 4, True) + 2 ** 31) % 2 ** 32 - 2 ** 31), _unsigned(header, 18, 4, True)])
    zero = tf.zeros([2], tf.int64)
    return tf.where(is_jpeg, jpeg,
                    tf.where(tf.equal(magic, b"\x89PNG"), png,
                             tf.where(tf.equal(magic, b"GIF8"), gif,
                                      tf.where(tf.equal(tf.strings.substr(magic, 0, 2), b"BM"), bmp, zero))))


def header_pixels(encoded: tf.Tensor) -> tf.Tensor:
    """width x height from the header (header_size), int64; 0 when the header is not one this reads."""
    size = header_size(encoded)
    return size[0] * size[1]


def decode_rgb(encoded: tf.Tensor, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> tf.Tensor:
    """JPEG/PNG/GIF/BMP bytes -> uint8 [h, w, 3]; grayscale and RGBA become RGB. Images of more than
    `max_pixels` (from the header) fail before being decoded, as undecodable images do, instead of taking
    the machine's memory; None when the caller has checked that already."""
    checks = []
    if max_pixels is not None:
        checks.append(tf.debugging.assert_less_equal(
            header_pixels(encoded), tf.constant(max_pixels, tf.int64),
            message=f"the image has more pixels than --max_image_pixels={max_pixels}"))
    with tf.control_dependencies(checks):
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


def random_crop_and_resize(image: tf.Tensor, image_size: int, seed: tf.Tensor,
                           area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3)) -> tf.Tensor:
    """Inception-style training crop: a random box of 8-100% of the area and 3/4-4/3 aspect, resized; drawn
    from the stateless `seed` [2]."""
    shape = tf.shape(image)
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=whole_image, seed=seed, min_object_covered=0.1, aspect_ratio_range=aspect_ratio_range,
        area_range=area_range, max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    return _resize(image, image_size, image_size)


def preprocess_for_eval(encoded: tf.Tensor, image_size: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tf.Tensor:
    """Bytes -> float32 [image_size, image_size, 3] in 0..255 (evaluation and serving)."""
    return center_crop_and_resize(decode_rgb(encoded, max_pixels), image_size)


def augment_for_train(image: tf.Tensor, image_size: int, seed: tf.Tensor, crop_min_area: float = 0.08) -> tf.Tensor:
    """Decoded uint8 image -> randomly cropped (crop_min_area..100% of its area) and flipped float32
    [image_size, image_size, 3] in 0..255, the crop and the flip drawn from the stateless `seed` [2]."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    crop = random_crop_and_resize(image, image_size, crop_seed, area_range=(crop_min_area, 1.0))
    return tf.image.stateless_random_flip_left_right(crop, flip_seed)


# --- detection: the whole image, aspect ratio kept, fitted into the model input and padded -----------------
def resize_to_fit(image: tf.Tensor, target_size, scale=1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes so the image fits (target height, width) * scale, aspect ratio kept.
    Returns (float32 image in 0..255, its new (height, width) as float32 [2])."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    target = tf.constant(target_size, tf.float32) * scale
    factor = tf.reduce_min(target / shape)
    scaled = tf.maximum(tf.round(shape * factor), 1.0)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.cast(scaled, tf.int32), method="bilinear")
    return tf.clip_by_value(resized, 0.0, 255.0), scaled


def pad_to_size(image: tf.Tensor, padded_size) -> tf.Tensor:
    """Pads at the bottom and right up to padded_size with the ImageNet mean colour (0 once normalised)."""
    height, width = padded_size
    mean = tf.constant(IMAGENET_MEAN_RGB, tf.float32)
    image = tf.image.pad_to_bounding_box(image - mean, 0, 0, height, width) + mean
    image.set_shape([height, width, 3])
    return image


def fit_and_pad(encoded: tf.Tensor, image_size, padded_size,
                max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[tf.Tensor, tf.Tensor]:
    """Bytes -> (float32 [padded h, padded w, 3] in 0..255, the (height, width) the image occupies in it).
    Detection evaluation and serving; boxes divided by that size are normalised to the original image."""
    image, scaled_size = resize_to_fit(decode_rgb(encoded, max_pixels), image_size)
    return pad_to_size(image, padded_size), scaled_size


class SeedStream:
    """Stateless random draws for one image, all from its seed [2]: each draw site gets its own seed, folded
    from the image's seed and the site's number (counted as the function is traced, so fixed per graph). The
    draws depend on the image's seed alone, not on which thread runs them or in what order."""

    def __init__(self, seed: tf.Tensor):
        self._seed, self._sites = seed, 0

    def next_seed(self) -> tf.Tensor:
        self._sites += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._sites)

    def uniform(self, shape=(), minval=0.0, maxval=None, dtype=tf.float32) -> tf.Tensor:
        if maxval is None and dtype.is_floating:
            maxval = 1.0
        return tf.random.stateless_uniform(shape, self.next_seed(), minval=minval, maxval=maxval, dtype=dtype)
