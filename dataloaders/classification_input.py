"""tf.data input for image classification: globbed TFRecords of tf.Examples with 1-based labels.

Structural problems (missing keys, a label of the wrong type or outside 1..num_classes) stop the job with a
message naming the file and record; undecodable image bytes are skipped, logged and counted
(`record_pipeline.decode_counted`) so the runtime can fail once they pass a threshold.
"""

import tensorflow as tf

from core import feature_keys
from dataloaders import image_ops, record_pipeline
from dataloaders.record_pipeline import RecordCounters

# What each feature must be; a record that differs is named with the feature and its actual type.
EXPECTED_KINDS = {feature_keys.IMAGE: "bytes_list", feature_keys.CLASS_LABEL: "int64_list"}


def _problem_text(path, index, encoded_count, label_values, num_classes):
    """'' when the record is usable, else the sentence that explains what is wrong with it."""
    where = record_pipeline.where(path, index)
    label_count = tf.size(label_values)
    label = tf.cond(label_count > 0, lambda: label_values[0], lambda: tf.constant(-1, tf.int64))
    missing_image = tf.strings.join([where, f" has no '{feature_keys.IMAGE}' bytes; every record needs the encoded "
                                     f"image in '{feature_keys.IMAGE}' and an integer '{feature_keys.CLASS_LABEL}'"])
    bad_label_count = tf.strings.join([where, " has ", tf.strings.as_string(label_count),
                                       f" values in '{feature_keys.CLASS_LABEL}'; it needs exactly one integer class label "
                                       f"in 1..{num_classes}"])
    out_of_range = tf.strings.join([where, f" has {feature_keys.CLASS_LABEL}=", tf.strings.as_string(label),
                                    f", outside 1..{num_classes}: labels are 1-based (labels-file line + 1); "
                                    "fix the record or --num_classes"])
    return tf.case([(encoded_count != 1, lambda: missing_image),
                    (label_count != 1, lambda: bad_label_count),
                    (tf.logical_or(label < 1, label > num_classes), lambda: out_of_range)],
                   default=lambda: tf.constant(""), exclusive=False)


def build_dataset(files: list[str], *, training: bool, image_size: int, batch_size: int, num_classes: int,
                  counters: RecordCounters, seed: int = 0, skip_records: int = 0, num_records: int = 0,
                  input_context: tf.distribute.InputContext | None = None,
                  image_files: tuple[list[str], list[int]] | None = None,
                  max_pixels: int = image_ops.DEFAULT_MAX_IMAGE_PIXELS, crop_min_area: float = 0.08) -> tf.data.Dataset:
    """Batches of (float32 images [b, s, s, 3] in 0..255, int32 0-based labels [b]).

    training: endless, shuffled, randomly cropped and flipped (all from `seed`), full batches only, starting after
    the first `skip_records` records of the stream (a resumed run).
    evaluation: one deterministic pass over the first `num_records` records (0 = all), centre crop, with a
    third element, per-example weights (0 for padding).
    image_files: (paths, 1-based labels) of image files to read instead of the TFRecord `files`.
    """
    if image_files is None:
        dataset = record_pipeline.records(files, training=training, seed=seed, skip_records=skip_records,
                                          num_records=num_records, input_context=input_context)
    else:
        dataset = record_pipeline.listed_files(*image_files, training=training, seed=seed, skip_records=skip_records,
                                               num_records=num_records, input_context=input_context)
    blank = tf.zeros([image_size, image_size, 3], tf.float32)

    def parse(serialized):
        features = tf.io.parse_single_example(serialized, {feature_keys.IMAGE: tf.io.VarLenFeature(tf.string),
                                                           feature_keys.CLASS_LABEL: tf.io.VarLenFeature(tf.int64)})
        return {key: value.values for key, value in features.items()}

    def problem_text(path, index, features):
        return _problem_text(path, index, tf.size(features[feature_keys.IMAGE]), features[feature_keys.CLASS_LABEL],
                             num_classes)

    def finish(image, features, element_seed):
        # Class-folder input: `features` is the 1-based label from the folder name, checked when listed.
        label = features if image_files is not None else features[feature_keys.CLASS_LABEL][0]
        if training:
            return (image_ops.augment_for_train(image, image_size, element_seed, crop_min_area),
                    tf.cast(label - 1, tf.int32))
        return image_ops.center_crop_and_resize(image, image_size), tf.cast(label - 1, tf.int32)

    dataset = record_pipeline.decode_counted(
        dataset, parse=parse if image_files is None else None, problem_text=problem_text, finish=finish,
        blank=lambda: (blank, tf.constant(0, tf.int32)), counters=counters, training=training,
        max_pixels=max_pixels, expected_kinds=EXPECTED_KINDS, seeds=record_pipeline.stream_seed(seed, input_context),
        first_position=skip_records)
    if training:
        dataset = dataset.batch(batch_size, drop_remainder=True)
    else:
        dataset = record_pipeline.full_batches_with_weights(dataset, batch_size, (blank, tf.constant(0, tf.int32)),
                                                            input_context)
    return record_pipeline.finish(dataset, training)
