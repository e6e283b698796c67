"""tf.data input for object detection: globbed TFRecords of tf.Examples with normalized boxes and 1-based
labels (the built-in detector's keys: image/object/bbox/{ymin,xmin,ymax,xmax}, image/object/class/label, optional
image/object/is_crowd and image/object/area).

Structural problems stop the job with a message naming file and record: box lists of different lengths,
coordinates outside [0, 1] or with min > max, a label outside 1..num_classes. Images without boxes are
valid (negatives). A feature of the wrong type stops the job naming it; undecodable image bytes are
skipped, logged and counted, as for classification.

Training: random flip, scale jitter, random crop to image_size and padding to the model input (a multiple
of 2^max_level), applied to image and boxes together; crowd boxes and boxes cropped away are dropped;
the remaining ones (at most max_boxes_in_training) are assigned to the anchors here, in the pipeline.
Evaluation: the whole image fitted into image_size and padded, with its ground truth for COCO AP.
"""

import tensorflow as tf

from core import feature_keys
from dataloaders import detection_autoaugment, image_ops, record_pipeline

# Normalized coordinates this far outside [0, 1] are clipped (rounding in converters); farther is an error.
COORDINATE_TOLERANCE = 0.01

# What each feature must be; a record that differs is named with the feature and its actual type.
EXPECTED_KINDS = {feature_keys.IMAGE: "bytes_list", feature_keys.OBJECT_LABEL: "int64_list",
                  feature_keys.OBJECT_IS_CROWD: "int64_list", feature_keys.OBJECT_AREA: "float_list",
                  **{key: "float_list" for key in feature_keys.BOXES}}


def _parse(serialized):
    spec = {feature_keys.IMAGE: tf.io.VarLenFeature(tf.string), feature_keys.OBJECT_LABEL: tf.io.VarLenFeature(tf.int64),
            feature_keys.OBJECT_IS_CROWD: tf.io.VarLenFeature(tf.int64), feature_keys.OBJECT_AREA: tf.io.VarLenFeature(tf.float32)}
    spec.update({key: tf.io.VarLenFeature(tf.float32) for key in feature_keys.BOXES})
    features = {key: value.values for key, value in tf.io.parse_single_example(serialized, spec).items()}
    return features


def _problem_text(path, index, features, num_classes):
    """'' when the record is usable, else the sentence that explains what is wrong with it."""
    where = record_pipeline.where(path, index)
    labels = features[feature_keys.OBJECT_LABEL]
    count = tf.size(labels)
    lengths = [tf.size(features[key]) for key in feature_keys.BOXES]
    same_length = tf.reduce_all(tf.equal(tf.stack(lengths), count))
    optional_ok = tf.logical_and(tf.logical_or(tf.size(features[feature_keys.OBJECT_IS_CROWD]) == 0, tf.size(features[feature_keys.OBJECT_IS_CROWD]) == count),
                                 tf.logical_or(tf.size(features[feature_keys.OBJECT_AREA]) == 0, tf.size(features[feature_keys.OBJECT_AREA]) == count))

    def boxes():
        return tf.stack([features[key] for key in feature_keys.BOXES], axis=-1)

    def first(mask):
        return tf.strings.as_string(tf.argmax(tf.cast(mask, tf.int32), output_type=tf.int32))

    def out_of_range_mask():
        values = boxes()
        return tf.reduce_any((values < -COORDINATE_TOLERANCE) | (values > 1 + COORDINATE_TOLERANCE), axis=-1)

    def inverted_mask():
        values = boxes()
        return (values[:, 0] > values[:, 2]) | (values[:, 1] > values[:, 3])

    bad_label = (labels < 1) | (labels > num_classes)
    counts = tf.strings.reduce_join(tf.strings.as_string(tf.stack([count, *lengths])), separator="/")

    def coordinate_text(mask, what):
        i = tf.argmax(tf.cast(mask, tf.int32), output_type=tf.int32)
        values = tf.strings.reduce_join(tf.strings.as_string(boxes()[i], precision=4), separator=", ")
        return tf.strings.join([where, " box ", tf.strings.as_string(i), " [ymin, xmin, ymax, xmax] = [", values,
                                "] ", what])

    return tf.case([
        (tf.size(features[feature_keys.IMAGE]) != 1, lambda: tf.strings.join(
            [where, f" has no '{feature_keys.IMAGE}' bytes; every record needs the encoded image"])),
        (~same_length, lambda: tf.strings.join(
            [where, " has label/ymin/xmin/ymax/xmax lists of lengths ", counts,
             f"; every box needs one value in each of '{feature_keys.OBJECT_LABEL}' and image/object/bbox/ymin, xmin, ymax, xmax"])),
        (~optional_ok, lambda: tf.strings.join(
            [where, f" has '{feature_keys.OBJECT_IS_CROWD}' or '{feature_keys.OBJECT_AREA}' of another length than its ", tf.strings.as_string(count),
             " boxes; give one value per box or leave them out"])),
        (tf.reduce_any(bad_label), lambda: tf.strings.join(
            [where, " box ", first(bad_label), f" has {feature_keys.OBJECT_LABEL}=",
             tf.strings.as_string(labels[tf.argmax(tf.cast(bad_label, tf.int32))]),
             f", outside 1..{num_classes}: labels are 1-based (labels-file line + 1); fix the record or --num_classes"])),
        (tf.reduce_any(out_of_range_mask()), lambda: coordinate_text(
            out_of_range_mask(), "is outside [0, 1]: boxes must be normalized (pixel coordinates divided by the "
            "image height and width)")),
        (tf.reduce_any(inverted_mask()), lambda: coordinate_text(
            inverted_mask(), "has ymin > ymax or xmin > xmax")),
    ], default=lambda: tf.constant(""), exclusive=False)


def _boxes_and_labels(features):
    boxes = tf.clip_by_value(tf.stack([features[key] for key in feature_keys.BOXES], axis=-1), 0.0, 1.0)
    boxes = tf.reshape(boxes, [-1, 4])
    labels = tf.cast(features[feature_keys.OBJECT_LABEL], tf.int32)
    crowd = features[feature_keys.OBJECT_IS_CROWD]
    crowd = tf.cond(tf.size(crowd) > 0, lambda: tf.cast(crowd, tf.int32), lambda: tf.zeros_like(labels))
    return boxes, labels, crowd


def _train_example(image, features, image_size, padded_size, augment, assign_targets, seed):
    """The decoded image jittered, cropped and padded, and its anchor targets; every draw from `seed` [2]."""
    draws = image_ops.SeedStream(seed)
    boxes, labels, crowd = _boxes_and_labels(features)
    if augment.auto_augmentation:  # on the decoded image, before flip and jitter, as upstream
        image, boxes = detection_autoaugment.distort(image, boxes, draws)
    if augment.random_flip:
        flip = draws.uniform() < 0.5
        image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
        boxes = tf.cond(flip, lambda: tf.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], -1),
                        lambda: boxes)
    scale = draws.uniform([], augment.scale_min, augment.scale_max)
    image, scaled_size = image_ops.resize_to_fit(image, image_size, scale)
    # A random window of image_size when the jittered image is larger; the whole image otherwise.
    target = tf.constant(image_size, tf.float32)
    room = tf.maximum(scaled_size - target, 0.0)
    offset = tf.floor(draws.uniform([2]) * (room + 1.0))
    window = tf.minimum(scaled_size, target)
    offset_i, window_i = tf.cast(offset, tf.int32), tf.cast(window, tf.int32)
    image = tf.slice(image, [offset_i[0], offset_i[1], 0], [window_i[0], window_i[1], 3])
    image = image_ops.pad_to_size(image, padded_size)

    pixels = boxes * tf.tile(scaled_size, [2]) - tf.tile(offset, [2])
    pixels = tf.minimum(tf.maximum(pixels, 0.0), tf.tile(window, [2]))
    keep = (pixels[:, 2] - pixels[:, 0] >= 1.0) & (pixels[:, 3] - pixels[:, 1] >= 1.0) & (crowd == 0)
    pixels = tf.boolean_mask(pixels, keep)[:augment.max_boxes]
    labels = tf.boolean_mask(labels, keep)[:augment.max_boxes]
    class_targets, box_targets = assign_targets(pixels, labels)
    return image, class_targets, box_targets


def _eval_example(image, features, image_size, padded_size):
    """The decoded image fitted and padded; its ground truth (normalized boxes, 1-based labels, crowd flags,
    areas in original pixels, or -1 to compute from the box), and its original and fitted sizes."""
    boxes, labels, crowd = _boxes_and_labels(features)
    original_size = tf.cast(tf.shape(image)[:2], tf.float32)
    image, scaled_size = image_ops.resize_to_fit(image, image_size)
    area = features[feature_keys.OBJECT_AREA]
    area = tf.cond(tf.size(area) > 0, lambda: area, lambda: -tf.ones_like(boxes[:, 0]))
    # One label-0 (padding) row more: a batch whose images all lack boxes would have a zero-sized dimension,
    # and tf.data 2.21 crashes (segfault) batching such batches again in full_batches_with_weights.
    boxes, labels, crowd, area = (tf.concat([t, tf.zeros([1, *t.shape[1:]], t.dtype)], 0)
                                  for t in (boxes, labels, crowd, area))
    return (image_ops.pad_to_size(image, padded_size), scaled_size, original_size, boxes, labels, crowd, area)


def build_dataset(files: list[str], *, training: bool, image_size: tuple, padded_size: tuple, batch_size: int,
                  num_classes: int, counters: record_pipeline.RecordCounters, augment=None, assign_targets=None,
                  seed: int = 0, skip_records: int = 0, num_records: int = 0,
                  input_context: tf.distribute.InputContext | None = None,
                  max_pixels: int = image_ops.DEFAULT_MAX_IMAGE_PIXELS) -> tf.data.Dataset:
    """training: endless batches of (images [b, H, W, 3] 0..255, (class targets [b, A], box targets [b, A, 4])).
    `augment` has random_flip, scale_min, scale_max, max_boxes; `assign_targets(pixel boxes, labels)` gives
    one image's targets.
    evaluation: one pass of (images, scaled sizes [b, 2], original sizes [b, 2], boxes [b, G, 4], labels [b, G]
    (0 = padding), crowd [b, G], areas [b, G], weights [b]) batches, G = most boxes in the batch.
    """
    dataset = record_pipeline.records(files, training=training, seed=seed, skip_records=skip_records,
                                      num_records=num_records, input_context=input_context)
    height, width = padded_size

    if training:
        def blank():
            anchors = assign_targets(tf.zeros([0, 4]), tf.zeros([0], tf.int32))
            return (tf.zeros([height, width, 3]), *anchors)
    else:
        def blank():
            return (tf.zeros([height, width, 3]), tf.ones([2]), tf.ones([2]), tf.zeros([1, 4]),
                    tf.zeros([1], tf.int32), tf.zeros([1], tf.int32), tf.zeros([1]))

    def finish(image, features, element_seed):
        if training:
            return _train_example(image, features, image_size, padded_size, augment, assign_targets, element_seed)
        return _eval_example(image, features, image_size, padded_size)

    dataset = record_pipeline.decode_counted(
        dataset, parse=_parse, problem_text=lambda path, index, features: _problem_text(path, index, features,
                                                                                       num_classes),
        finish=finish, blank=blank, counters=counters, training=training, max_pixels=max_pixels,
        expected_kinds=EXPECTED_KINDS, seeds=record_pipeline.stream_seed(seed, input_context),
        first_position=skip_records)
    if training:
        dataset = dataset.map(lambda image, classes, boxes: (image, (classes, boxes)))
        dataset = dataset.batch(batch_size, drop_remainder=True)
    else:
        dataset = record_pipeline.full_batches_with_weights(dataset, batch_size, blank(), input_context)
    return record_pipeline.finish(dataset, training)
