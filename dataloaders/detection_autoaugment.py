"""AutoAugment for object detection, policy v0 (Zoph et al. 2019, "Learning Data Augmentation Strategies for
Object Detection"), the policy the built-in's --auto_augmentation=true applies (upstream RetinaNet:
`autoaugment_policy_name: v0`).

Each image gets one of five sub-policies, chosen uniformly; each of its two operations runs with its own
probability. Geometric operations move the boxes with the pixels (the four corners are mapped and the
enclosing box is kept); boxes pushed entirely out of the image come back with a zero area and are dropped by
the caller. Operations named *_Only_BBoxes act inside each box (each box with a third of the operation's
probability) and leave the boxes where they are.

Upstream magnitudes are in pixels of COCO-sized images (~640 px); here they are the same fractions of the
image's longer side, so a 128 px image is translated as much, relatively, as a 640 px one.
"""

import math

import tensorflow as tf

from dataloaders.image_ops import SeedStream

FILL = 128.0  # grey, as upstream, for pixels a transform uncovers
REFERENCE_SIDE = 640.0
TRANSLATE_FRACTION = 250.0 / REFERENCE_SIDE       # TranslateX_BBox at magnitude 10
BOX_TRANSLATE_FRACTION = 120.0 / REFERENCE_SIDE   # TranslateY_Only_BBoxes at magnitude 10
CUTOUT_FRACTION = 100.0 / REFERENCE_SIDE          # Cutout half-side at magnitude 10
MAX_SHEAR = 0.3
MAX_ROTATE_DEGREES = 30.0

# (operation, probability, magnitude 0..10) pairs; upstream policy_v0.
POLICY_V0 = (
    (("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)),
    (("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)),
    (("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)),
    (("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)),
    (("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)),
)


def _random_sign(value, draws: SeedStream):
    return tf.where(draws.uniform() < 0.5, -value, value)


def _blend(original, other, factor):
    """PIL ImageEnhance: factor 0 gives `other`, 1 the original, above 1 extrapolates."""
    return tf.clip_by_value(other + factor * (original - other), 0.0, 255.0)


# --- geometry: one affine path for image and boxes ----------------------------------------------------------
def affine(image, boxes, matrix):
    """Applies the 3x3 pixel-space map `matrix` ((x, y, 1) of the input -> of the output) to the image (grey
    fill) and to the normalized [ymin, xmin, ymax, xmax] boxes (enclosing box of the mapped corners, clipped)."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    inverse = tf.linalg.inv(matrix)  # the image op asks, for each output pixel, where to sample the input
    transform = tf.concat([inverse[0, :], inverse[1, :2], [inverse[1, 2], 0.0, 0.0]], 0)[None]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform, output_shape=shape[:2], fill_value=FILL,
        interpolation="BILINEAR", fill_mode="CONSTANT")[0]
    ymin, xmin, ymax, xmax = tf.unstack(boxes * tf.stack([height, width, height, width]), axis=-1)
    corners_x = tf.stack([xmin, xmax, xmin, xmax], -1)
    corners_y = tf.stack([ymin, ymin, ymax, ymax], -1)
    mapped_x = matrix[0, 0] * corners_x + matrix[0, 1] * corners_y + matrix[0, 2]
    mapped_y = matrix[1, 0] * corners_x + matrix[1, 1] * corners_y + matrix[1, 2]
    mapped = tf.stack([tf.reduce_min(mapped_y, -1) / height, tf.reduce_min(mapped_x, -1) / width,
                       tf.reduce_max(mapped_y, -1) / height, tf.reduce_max(mapped_x, -1) / width], -1)
    return warped, tf.clip_by_value(mapped, 0.0, 1.0)


def _matrix(rows):
    return tf.convert_to_tensor(rows, tf.float32)


def translate_x(image, boxes, pixels):
    return affine(image, boxes, _matrix([[1.0, 0.0, pixels], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def shear(image, boxes, level, horizontal: bool):
    rows = [[1.0, level, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] if horizontal else \
        [[1.0, 0.0, 0.0], [level, 1.0, 0.0], [0.0, 0.0, 1.0]]
    return affine(image, boxes, _matrix(rows))


def rotate(image, boxes, degrees):
    """Counter-clockwise on screen about the centre."""
    shape = tf.cast(tf.shape(image), tf.float32)
    cy, cx = (shape[0] - 1.0) / 2.0, (shape[1] - 1.0) / 2.0
    radians = degrees * math.pi / 180.0
    cos, sin = tf.cos(radians), tf.sin(radians)
    # x' = cx + cos(x - cx) + sin(y - cy); y' = cy - sin(x - cx) + cos(y - cy)  (y grows downwards)
    return affine(image, boxes, _matrix([[cos, sin, cx - cos * cx - sin * cy],
                                         [-sin, cos, cy + sin * cx - cos * cy],
                                         [0.0, 0.0, 1.0]]))


# --- colour and cut-outs ------------------------------------------------------------------------------------
def equalize(image):
    """Per-channel histogram equalisation (PIL ImageOps.equalize)."""
    def channel(values):
        values = tf.cast(values, tf.int32)
        histogram = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)
        nonzero = tf.boolean_mask(histogram, histogram > 0)
        step = (tf.reduce_sum(histogram) - nonzero[-1]) // 255
        lookup = tf.clip_by_value((tf.cumsum(histogram) - histogram + step // 2) // tf.maximum(step, 1), 0, 255)
        return tf.cast(tf.where(step > 0, tf.gather(lookup, values), values), tf.float32)

    rounded = tf.round(tf.clip_by_value(image, 0.0, 255.0))
    return tf.stack([channel(rounded[..., c]) for c in range(3)], -1)


def color(image, factor):
    gray = tf.image.rgb_to_grayscale(image)
    return _blend(image, tf.tile(gray, [1, 1, 3]), factor)


def sharpness(image, factor):
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smoothed = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "SAME")[0]
    # PIL keeps the border pixels as they are.
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    interior = tf.pad(tf.ones([height - 2, width - 2, 3]), [[1, 1], [1, 1], [0, 0]])
    return _blend(image, interior * smoothed + (1.0 - interior) * image, factor)


def cutout(image, half_side, draws: SeedStream):
    """A grey square of side 2 * half_side centred on a random pixel."""
    shape = tf.shape(image)
    center_y = draws.uniform([], 0, shape[0], tf.int32)
    center_x = draws.uniform([], 0, shape[1], tf.int32)
    rows, cols = tf.range(shape[0])[:, None], tf.range(shape[1])[None, :]
    inside = (tf.abs(rows - center_y) < half_side) & (tf.abs(cols - center_x) < half_side)
    return tf.where(inside[..., None], FILL, image)


def translate_y_only_boxes(image, boxes, pixels, probability, draws: SeedStream):
    """Inside each box (each with `probability`), its content shifted vertically by `pixels`; what comes
    from outside the box is grey, as when upstream shifts the box's crop and pastes it back."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    pixels = tf.round(pixels)
    shifted, _ = affine(image, tf.zeros([0, 4]), _matrix([[1.0, 0.0, 0.0], [0.0, 1.0, pixels], [0.0, 0.0, 1.0]]))
    rows = tf.range(shape[0], dtype=tf.float32)[:, None]
    cols = tf.range(shape[1], dtype=tf.float32)[None, :]

    def one_box(masks, box_and_draw):
        take, grey = masks
        box, draw = box_and_draw
        top, bottom = tf.round(box[0] * height), tf.round(box[2] * height)
        inside = ((rows >= top) & (rows < bottom) & (cols >= tf.round(box[1] * width)) &
                  (cols < tf.round(box[3] * width)) & (draw < probability))
        source_inside = (rows - pixels >= top) & (rows - pixels < bottom)
        return take | (inside & source_inside), grey | (inside & ~source_inside)

    empty = tf.zeros([shape[0], shape[1]], tf.bool)
    take, grey = tf.foldl(one_box, (boxes, draws.uniform([tf.shape(boxes)[0]])), initializer=(empty, empty))
    image = tf.where(take[..., None], shifted, image)
    return tf.where(grey[..., None], FILL, image)


# --- the policy -------------------------------------------------------------------------------------------
def apply_operation(name, image, boxes, probability, magnitude, draws: SeedStream):
    """One named operation (always applied: the caller draws `probability`); returns (image, boxes)."""
    level = magnitude / 10.0
    side = tf.cast(tf.reduce_max(tf.shape(image)[:2]), tf.float32)
    if name == "TranslateX_BBox":
        return translate_x(image, boxes, tf.round(_random_sign(level * TRANSLATE_FRACTION * side, draws)))
    if name == "TranslateY_Only_BBoxes":
        pixels = _random_sign(level * BOX_TRANSLATE_FRACTION * side, draws)
        return translate_y_only_boxes(image, boxes, pixels, probability / 3.0, draws), boxes
    if name == "ShearX_BBox":
        return shear(image, boxes, _random_sign(level * MAX_SHEAR, draws), horizontal=True)
    if name == "ShearY_BBox":
        return shear(image, boxes, _random_sign(level * MAX_SHEAR, draws), horizontal=False)
    if name == "Rotate_BBox":
        return rotate(image, boxes, _random_sign(level * MAX_ROTATE_DEGREES, draws))
    if name == "Equalize":
        return equalize(image), boxes
    if name == "Cutout":
        return cutout(image, tf.cast(level * CUTOUT_FRACTION * side, tf.int32), draws), boxes
    if name == "Sharpness":
        return sharpness(image, level * 1.8 + 0.1), boxes
    if name == "Color":
        return color(image, level * 1.8 + 0.1), boxes
    raise ValueError(f"unknown AutoAugment operation {name}")


def distort(image, boxes, draws: SeedStream, policy=POLICY_V0):
    """float32 image [H, W, 3] in 0..255 and normalized boxes [N, 4] -> both after one random sub-policy, drawn
    from `draws`. Boxes keep their order and count (the caller drops those left without area)."""
    image = tf.cast(image, tf.float32)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])

    def sub_policy(operations):
        def run():
            result_image, result_boxes = image, boxes
            for name, probability, magnitude in operations:
                def apply(img=result_image, bxs=result_boxes, name=name, p=probability, m=magnitude):
                    return apply_operation(name, img, bxs, p, m, draws)

                result_image, result_boxes = tf.cond(draws.uniform() < probability, apply,
                                                     lambda img=result_image, bxs=result_boxes: (img, bxs))
            return result_image, result_boxes
        return run

    choice = draws.uniform([], 0, len(policy), tf.int32)
    image, boxes = tf.switch_case(choice, [sub_policy(operations) for operations in policy])
    return tf.ensure_shape(image, [None, None, 3]), boxes
