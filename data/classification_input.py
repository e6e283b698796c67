"""tf.data input for image classification: globbed TFRecords of tf.Examples with 1-based labels.

Structural problems (missing keys, a label outside 1..num_classes) stop the job with a message naming the
file and record; undecodable image bytes are skipped and counted (`RecordCounters`) so the runtime can fail
once they pass a threshold.
"""

import tensorflow as tf

from algorithms.runtime.errors import DATA_ERROR_MARKER
from data import image_ops

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
SHUFFLE_BUFFER_RECORDS = 1024
READ_BUFFER_BYTES = 8 * 1024 * 1024
MAX_PARALLEL_FILES = 16


class RecordCounters:
    """Records that entered decoding and records that came out; the difference is what was skipped.

    Both are counted inside one map call (before and after decoding), so while a pipeline runs only the calls
    executing at that instant sit between them; for a finished evaluation pass the difference is exact.
    """

    def __init__(self, name: str):
        with tf.device("/cpu:0"):
            self.attempted = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_attempted")
            self.decoded = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_decoded")

    def reset(self):
        self.attempted.assign(0)
        self.decoded.assign(0)

    def read(self) -> tuple[int, int]:
        attempted = int(self.attempted.numpy())
        return attempted, attempted - int(self.decoded.numpy())


def _records_with_origin(files: tf.data.Dataset, training: bool, num_files: int) -> tf.data.Dataset:
    """(file name, record index in that file, serialized record) so errors can name their record."""

    def read_file(path):
        records = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES)
        return records.enumerate().map(lambda index, record: (path, index, record))

    return files.interleave(read_file, cycle_length=max(1, min(num_files, MAX_PARALLEL_FILES)), block_length=1,
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)


def _problem_text(path, index, encoded_count, label_values, num_classes):
    """'' when the record is usable, else the sentence that explains what is wrong with it."""
    where = tf.strings.join(["record ", tf.strings.as_string(index), " of ", path])
    label_count = tf.size(label_values)
    label = tf.cond(label_count > 0, lambda: label_values[0], lambda: tf.constant(-1, tf.int64))
    missing_image = tf.strings.join([where, f" has no '{IMAGE_KEY}' bytes; every record needs the encoded "
                                     f"image in '{IMAGE_KEY}' and an integer '{LABEL_KEY}'"])
    bad_label_count = tf.strings.join([where, " has ", tf.strings.as_string(label_count),
                                       f" values in '{LABEL_KEY}'; it needs exactly one integer class label "
                                       f"in 1..{num_classes}"])
    out_of_range = tf.strings.join([where, f" has {LABEL_KEY}=", tf.strings.as_string(label),
                                    f", outside 1..{num_classes}: labels are 1-based (labels-file line + 1); "
                                    "fix the record or --num_classes"])
    return tf.case([(encoded_count != 1, lambda: missing_image),
                    (label_count != 1, lambda: bad_label_count),
                    (tf.logical_or(label < 1, label > num_classes), lambda: out_of_range)],
                   default=lambda: tf.constant(""), exclusive=False)


def _full_batches_with_weights(dataset, batch_size, image_size, input_context):
    """(images, labels, weights) batches that are all full and come in whole groups of one per replica.

    A replica handed an empty final batch breaks Keras layers under Mirrored strategies, so the stream is
    padded with weight-0 blank examples: B*R - 1 of them guarantee that full groups of R batches of B cover
    every real example (R = replicas fed by this pipeline); the leftover padding is dropped.
    """
    replicas = 1
    if input_context is not None:
        replicas = max(1, input_context.num_replicas_in_sync // input_context.num_input_pipelines)
    weighted = dataset.map(lambda image, label: (image, label, tf.constant(1.0)))
    padding = tf.data.Dataset.from_tensors(
        (tf.zeros([image_size, image_size, 3], tf.float32), tf.constant(0, tf.int32), tf.constant(0.0)))
    padded = weighted.concatenate(padding.repeat(batch_size * replicas - 1))
    batches = padded.batch(batch_size, drop_remainder=True)
    return batches.batch(replicas, drop_remainder=True).unbatch()


def build_dataset(files: list[str], *, training: bool, image_size: int, batch_size: int, num_classes: int,
                  counters: RecordCounters, seed: int | None = None, num_records: int = 0,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Batches of (float32 images [b, s, s, 3] in 0..255, int32 0-based labels [b]).

    training: endless, shuffled, randomly cropped and flipped, full batches only.
    evaluation: one deterministic pass over the first `num_records` records (0 = all), centre crop, with a
    third element, per-example weights (0 for padding).
    """
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    # Several workers train on different files when there are enough, else on different records; every worker
    # evaluates the whole set (the runtime divides the summed metrics by the number of workers).
    shard_files = training and pipelines > 1 and len(files) >= pipelines
    file_names = tf.data.Dataset.from_tensor_slices(files)
    if shard_files:
        file_names = file_names.shard(pipelines, pipeline_id)
    if training:
        file_names = file_names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    records = _records_with_origin(file_names, training, len(files))
    if not training and num_records:
        records = records.take(num_records)
    if training and pipelines > 1 and not shard_files:
        records = records.shard(pipelines, pipeline_id)
    if training:
        records = records.shuffle(SHUFFLE_BUFFER_RECORDS, seed=seed, reshuffle_each_iteration=True)

    preprocess = image_ops.preprocess_for_train if training else image_ops.preprocess_for_eval
    blank = tf.zeros([image_size, image_size, 3], tf.float32)

    def parse_and_decode(path, index, serialized):
        with tf.control_dependencies([counters.attempted.assign_add(1)]):
            features = tf.io.parse_single_example(
                serialized, {IMAGE_KEY: tf.io.VarLenFeature(tf.string), LABEL_KEY: tf.io.VarLenFeature(tf.int64)})
        encoded = features[IMAGE_KEY].values
        labels = features[LABEL_KEY].values
        problem = _problem_text(path, index, tf.size(encoded), labels, num_classes)
        usable = tf.equal(problem, "")
        # A structurally bad record skips decoding and travels on to the check below, which stops the job;
        # a decode failure raises here and is dropped (and counted) by ignore_errors.
        image = tf.cond(usable, lambda: preprocess(encoded[0], image_size), lambda: blank)
        label = tf.cond(usable, lambda: labels[0], lambda: tf.constant(1, tf.int64))
        # Counted in the same call, after decoding: only calls still running sit between the two counters.
        with tf.control_dependencies([image]):
            counted = counters.decoded.assign_add(1)
        with tf.control_dependencies([counted]):
            return tf.identity(image), tf.cast(label - 1, tf.int32), problem

    def check(image, label, problem):
        failed = tf.debugging.Assert(tf.equal(problem, ""), [tf.strings.join([DATA_ERROR_MARKER, problem])])
        with tf.control_dependencies([failed]):
            return tf.identity(image), tf.identity(label)

    dataset = records.map(parse_and_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    dataset = dataset.ignore_errors(log_warning=True)
    dataset = dataset.map(check)
    if training:
        dataset = dataset.batch(batch_size, drop_remainder=True)
    else:
        dataset = _full_batches_with_weights(dataset, batch_size, image_size, input_context)
    options = tf.data.Options()
    options.deterministic = not training
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
