"""tf.data input for image classification: globbed TFRecords of tf.Examples with 1-based labels.

Structural problems (missing keys, a label outside 1..num_classes) stop the job with a message naming the
file and record; undecodable image bytes are skipped and counted (`RecordCounters`) so the runtime can fail
once they pass a threshold.
"""

import tensorflow as tf

from core import feature_keys
from dataloaders import image_ops, record_pipeline
from dataloaders.record_pipeline import RecordCounters


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
                  counters: RecordCounters, seed: int | None = None, num_records: int = 0,
                  input_context: tf.distribute.InputContext | None = None,
                  image_files: tuple[list[str], list[int]] | None = None,
                  max_pixels: int = image_ops.DEFAULT_MAX_IMAGE_PIXELS) -> tf.data.Dataset:
    """Batches of (float32 images [b, s, s, 3] in 0..255, int32 0-based labels [b]).

    training: endless, shuffled, randomly cropped and flipped, full batches only.
    evaluation: one deterministic pass over the first `num_records` records (0 = all), centre crop, with a
    third element, per-example weights (0 for padding).
    image_files: (paths, 1-based labels) of image files to read instead of the TFRecord `files`.
    """
    if image_files is None:
        dataset = record_pipeline.records(files, training=training, seed=seed, num_records=num_records,
                                          input_context=input_context)
    else:
        dataset = record_pipeline.listed_files(*image_files, training=training, seed=seed, num_records=num_records,
                                               input_context=input_context)
    preprocess_image = image_ops.preprocess_for_train if training else image_ops.preprocess_for_eval

    def preprocess(encoded, size):
        return preprocess_image(encoded, size, max_pixels)

    blank = tf.zeros([image_size, image_size, 3], tf.float32)

    def parse_and_decode(path, index, serialized):
        features = tf.io.parse_single_example(
            serialized, {feature_keys.IMAGE: tf.io.VarLenFeature(tf.string), feature_keys.CLASS_LABEL: tf.io.VarLenFeature(tf.int64)})
        encoded = features[feature_keys.IMAGE].values
        labels = features[feature_keys.CLASS_LABEL].values
        problem = _problem_text(path, index, tf.size(encoded), labels, num_classes)
        usable = tf.equal(problem, "")
        image = tf.cond(usable, lambda: preprocess(encoded[0], image_size), lambda: blank)
        label = tf.cond(usable, lambda: labels[0], lambda: tf.constant(1, tf.int64))
        return (image, tf.cast(label - 1, tf.int32)), problem

    def read_and_decode(path, index, label):
        # Labels come from the folder names, checked when listed; only the bytes can be bad here.
        return (preprocess(tf.io.read_file(path), image_size), tf.cast(label - 1, tf.int32)), tf.constant("")

    dataset = record_pipeline.decode_counted(dataset, parse_and_decode if image_files is None else read_and_decode,
                                             counters, training)
    if training:
        dataset = dataset.batch(batch_size, drop_remainder=True)
    else:
        dataset = record_pipeline.full_batches_with_weights(dataset, batch_size, (blank, tf.constant(0, tf.int32)),
                                                            input_context)
    return record_pipeline.finish(dataset, training)
