"""The parts of a tf.data pipeline over globbed TFRecords that every task shares: reading with the origin of
each record (so errors name file and record), sharding across workers, skip counting, the data-error check,
and full evaluation batches with weights.
"""

import tensorflow as tf

from core.errors import DATA_ERROR_MARKER

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


def records(files: list[str], *, training: bool, seed: int | None = None, num_records: int = 0,
            input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """(path, index, serialized) records: endless and shuffled for training, one ordered pass of the first
    `num_records` (0 = all) for evaluation.

    Several workers train on different files when there are enough, else on different records; every worker
    evaluates the whole set (the runtime accounts for the copies).
    """
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    shard_files = training and pipelines > 1 and len(files) >= pipelines
    file_names = tf.data.Dataset.from_tensor_slices(files)
    if shard_files:
        file_names = file_names.shard(pipelines, pipeline_id)
    if training:
        file_names = file_names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = _records_with_origin(file_names, training, len(files))
    if not training and num_records:
        dataset = dataset.take(num_records)
    if training and pipelines > 1 and not shard_files:
        dataset = dataset.shard(pipelines, pipeline_id)
    if training:
        dataset = dataset.shuffle(SHUFFLE_BUFFER_RECORDS, seed=seed, reshuffle_each_iteration=True)
    return dataset


def listed_files(paths: list[str], labels: list[int], *, training: bool, seed: int | None = None,
                 num_records: int = 0, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """(path, index, 1-based label) of image files listed with their labels (class-folder input), sharded
    and shuffled as `records` does; the files themselves are read by the caller's decode step."""
    dataset = tf.data.Dataset.from_tensor_slices((tf.constant(paths), tf.range(len(paths), dtype=tf.int64),
                                                  tf.constant(labels, tf.int64)))
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    if training:
        if pipelines > 1:
            dataset = dataset.shard(pipelines, pipeline_id)
        return dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()
    return dataset.take(num_records) if num_records else dataset


def where(path, index) -> tf.Tensor:
    """'record 12 of gs://bucket/train-00001-of-00004', the prefix of every data error."""
    return tf.strings.join(["record ", tf.strings.as_string(index), " of ", path])


def decode_counted(records_dataset: tf.data.Dataset, parse_and_decode, counters: RecordCounters,
                   training: bool) -> tf.data.Dataset:
    """Maps `parse_and_decode(path, index, serialized) -> (example tuple, problem text)` and then stops the
    job on the first non-empty problem, with that text; a decode failure inside it (undecodable image
    bytes) drops the record and is counted as skipped.

    parse_and_decode must skip decoding for a structurally bad record (tf.cond on its problem) so that the
    record travels on to the check, which fails the job with the record's own explanation.
    """

    def counted(path, index, serialized):
        with tf.control_dependencies([counters.attempted.assign_add(1)]):
            serialized = tf.identity(serialized)
        example, problem = parse_and_decode(path, index, serialized)
        # Counted in the same call, after decoding: only calls still running sit between the two counters.
        with tf.control_dependencies(tf.nest.flatten(example)):
            done = counters.decoded.assign_add(1)
        with tf.control_dependencies([done]):
            return tf.nest.map_structure(tf.identity, example), tf.identity(problem)

    def check(example, problem):
        failed = tf.debugging.Assert(tf.equal(problem, ""), [tf.strings.join([DATA_ERROR_MARKER, problem])])
        with tf.control_dependencies([failed]):
            return tf.nest.map_structure(tf.identity, example)

    dataset = records_dataset.map(counted, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    dataset = dataset.ignore_errors(log_warning=True)
    return dataset.map(check)


def full_batches_with_weights(dataset: tf.data.Dataset, batch_size: int, blank_example,
                              input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
    """(*example, weight) batches that are all full and come in whole groups of one per replica.

    A replica handed an empty final batch breaks Keras layers under Mirrored strategies, so the stream is
    padded with weight-0 copies of `blank_example`: B*R - 1 of them guarantee that full groups of R batches
    of B cover every real example (R = replicas fed by this pipeline); the leftover padding is dropped.
    Variable-length parts (a detection image's boxes) are zero-padded to the longest in the batch.
    """
    replicas = 1
    if input_context is not None:
        replicas = max(1, input_context.num_replicas_in_sync // input_context.num_input_pipelines)
    weighted = dataset.map(lambda *example: (*example, tf.constant(1.0)))
    padding = tf.data.Dataset.from_tensors((*blank_example, tf.constant(0.0)))
    padded = weighted.concatenate(padding.repeat(batch_size * replicas - 1))
    batches = padded.padded_batch(batch_size, drop_remainder=True)
    return batches.padded_batch(replicas, drop_remainder=True).unbatch()


def finish(dataset: tf.data.Dataset, training: bool) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = not training
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
