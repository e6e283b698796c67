"""The parts of a tf.data pipeline over globbed TFRecords that every task shares: reading with the origin of
each record (so errors name file and record), sharding across workers, accounting for every record that is
skipped (and why), the data-error check, and full evaluation batches with weights.

What can go wrong with a record, and what happens:
- the file's TFRecord framing is cut or corrupt (an interrupted upload, a bad disk): the reader stops in that
  file; the bytes it did not reach are noticed against the file's size. Training skips the rest of the file
  and counts the records it probably held; evaluation stops the job naming the file (a metric over part of
  the validation set is not the metric the user asked for).
- a structural problem (missing key, a label of the wrong type or outside 1..num_classes, bad boxes): the job
  stops with a sentence naming the record; the data, not the run, has to change.
- the image cannot be decoded, or is larger than --max_image_pixels: the record is skipped and counted.
Every skipped record is logged with its file and index (the first 20, then the 100th, 1000th, ...), and the
runtime fails the job once the skipped fraction passes --max_bad_image_fraction.
"""

import concurrent.futures
import sys

import tensorflow as tf
from absl import logging

from core import feature_keys
from core.errors import DATA_ERROR_MARKER, UserInputError
from core.paths import describe_io_error
from dataloaders import image_ops, tfrecord_files

SHUFFLE_BUFFER_RECORDS = 1024
# Training streams are epochs numbered from 0; epoch n shuffles with seed * EPOCH_SEED_STRIDE + n.
EPOCH_SEED_STRIDE = 1_000_003
MAX_EPOCHS = 2**40
EPOCH_GRAPH_SEED = 1
READ_BUFFER_BYTES = 8 * 1024 * 1024
MAX_PARALLEL_FILES = 16
# Bytes of TFRecord framing around each record: length (8), length CRC (4), data CRC (4).
RECORD_FRAMING_BYTES = 16
# Records of one file accounted for together (see _read_file).
ACCOUNTING_BATCH_RECORDS = 64
# How a file whose storage keeps failing is reported (it stops the job: a storage outage is not a bad file).
STORAGE_FAILURE = "cannot read "
# Origins kept of the records entering decoding, to name those a failed decode drops (far more than the
# decode stage ever has in flight ahead of the accounting that reads them).
ORIGINS_KEPT = 4096
# At most this many records of one gap (consecutive failures) are listed by name.
NAMED_IN_A_GAP = 8
# Skipped records logged one by one; after that only the 100th, 1000th, ... (the summary counts them all).
SKIPS_LOGGED_EACH = 20

_FEATURE_KINDS = ("bytes_list", "float_list", "int64_list")


class RecordCounters:
    """Records that entered decoding and records that were skipped (exact: both are counted in the call that
    decides; a broken file counts the records it probably held)."""

    def __init__(self, name: str):
        with tf.device("/cpu:0"):
            self.attempted = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_attempted")
            self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_skipped")
            # Where the last ORIGINS_KEPT records entering decoding came from (file, record), by position.
            self.origin_paths = tf.Variable(tf.fill([ORIGINS_KEPT], ""), trainable=False, name=f"{name}_paths")
            self.origin_indices = tf.Variable(tf.fill([ORIGINS_KEPT], tf.constant(-1, tf.int64)), trainable=False,
                                              name=f"{name}_indices")
            self.origin_positions = tf.Variable(tf.fill([ORIGINS_KEPT], tf.constant(-1, tf.int64)),
                                                trainable=False, name=f"{name}_positions")

    def remember(self, position, path, index):
        slot = [[position % ORIGINS_KEPT]]
        return tf.group(self.origin_paths.scatter_nd_update(slot, [path]),
                        self.origin_indices.scatter_nd_update(slot, [index]),
                        self.origin_positions.scatter_nd_update(slot, [position]))

    def origins(self, first, last):
        """(paths, indices, known) of the records at positions first..last-1; known is False where a record
        failed before its origin was noted (an error upstream of decoding)."""
        slots = tf.range(first, last) % ORIGINS_KEPT
        known = tf.equal(tf.gather(self.origin_positions, slots), tf.range(first, last))
        return tf.gather(self.origin_paths, slots), tf.gather(self.origin_indices, slots), known

    def reset(self):
        self.attempted.assign(0)
        self.skipped.assign(0)

    def read(self) -> tuple[int, int]:
        return int(self.attempted.numpy()), int(self.skipped.numpy())


def file_sizes(files: list[str]) -> list[int]:
    """Each file's size in bytes, to notice a reader that stopped early; stat'ed in parallel (gs:// round trips)."""

    def size(path):
        try:
            return tf.io.gfile.stat(path).length
        except tf.errors.OpError as error:
            raise UserInputError(f"cannot read {path}: {describe_io_error(path, error)}") from None

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(size, files))


def where(path, index) -> tf.Tensor:
    """'record 12 of gs://bucket/train-00001-of-00004', the prefix of every data error."""
    return tf.strings.join(["record ", tf.strings.as_string(index), " of ", path])


def _read_file(path, size):
    """(path, index, record, read problem, records lost) for each record of one file, then one more element
    when the reader stopped before the end of the file: its problem says where, and how much was lost.

    The reader stops at the first broken frame (TFRecordDataset moves on to the next file); the bytes it
    consumed are summed per batch of records (a per-record function would cost more than the read itself) and
    compared with the file's size."""
    records = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES).enumerate().ignore_errors()
    batches = records.batch(ACCOUNTING_BATCH_RECORDS)
    end = tf.data.Dataset.from_tensors((tf.constant([-1], tf.int64), tf.constant([b""])))

    def account(state, batch):
        consumed, count = state
        indices, records_ = batch
        is_end = indices[0] < 0
        real = tf.cast(~is_end, tf.int64)
        size_of_batch = real * tf.reduce_sum(tf.cast(tf.strings.length(records_), tf.int64) + RECORD_FRAMING_BYTES)
        new_state = (consumed + size_of_batch, count + real * tf.size(indices, out_type=tf.int64))
        unread = size - consumed
        # Records the unread bytes probably held, at this file's mean record size (at least one).
        mean = tf.math.maximum(consumed // tf.maximum(count, 1), 1)
        lost = tf.where(count > 0, tf.maximum((unread + mean // 2) // mean, 1), tf.constant(1, tf.int64))
        broken = is_end & (unread != 0)

        def explain():
            problem_ = tf.py_function(_broken_file_problem, [path, consumed, size, count, lost], tf.string)
            problem_.set_shape([])
            return problem_

        problem = tf.cond(broken, explain, lambda: tf.constant(""))
        count_in_batch = tf.size(indices)
        # The element after a broken file's last record carries the index of the record that could not be read.
        # lost: the records a broken file probably held; -1 when the storage failed (that stops the job).
        failed = tf.strings.regex_full_match(problem, f"{STORAGE_FAILURE}.*")
        lost = tf.where(broken, tf.where(failed, tf.constant(-1, tf.int64), lost), tf.constant(0, tf.int64))
        output = (tf.fill([count_in_batch], path), tf.where(is_end, count, indices), records_,
                  tf.fill([count_in_batch], problem), tf.fill([count_in_batch], lost))
        return new_state, (output, ~is_end | broken)

    accounted = batches.concatenate(end).scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), account)
    return accounted.filter(lambda output, keep: keep).map(lambda output, keep: output).unbatch()


def _broken_file_problem(path, offset, size, count, lost) -> bytes:
    """Why the reader stopped `offset` bytes into `path` (rare, so Python may look): the record there is cut or
    corrupt, or reads fine now (a storage error that outlasted the client's retries, then passed). Storage that
    still fails stops the job with one line naming the file, instead of passing for a corrupt file."""
    path, offset, size, count, lost = path.numpy().decode(), int(offset), int(size), int(count), int(lost)
    try:
        damage = tfrecord_files.damage_at(path, offset, size)
    except tf.errors.OpError as error:
        at = f"after record {count - 1}" if count else "at its first record"
        return f"{STORAGE_FAILURE}{path} ({at}): {describe_io_error(path, error)}".encode()
    where_ = (f"{path}: reading stopped after record {count - 1}, {size - offset} of its {size} bytes unread "
              f"(about {lost} more record(s))")
    if damage is None:
        return (f"{where_}; the file reads correctly on a second try, so a storage error interrupted the read: "
                "rerun if this repeats").encode()
    what = "the file ends inside the next record" if damage == "cut" else "the next record's checksum does not match"
    return (f"{where_}: {what}; re-upload or re-convert this file (an interrupted copy leaves a cut file)").encode()


def _records_with_origin(files: tf.data.Dataset, num_files: int) -> tf.data.Dataset:
    # In order, training too: a seeded run reads the same sequence whichever file answers first.
    return files.interleave(_read_file, cycle_length=max(1, min(num_files, MAX_PARALLEL_FILES)), block_length=1,
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def records(files: list[str], *, training: bool, seed: int = 0, skip_records: int = 0,
            num_records: int = 0, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """(path, index, serialized, read problem, records lost) records: for training, endless passes (epochs)
    over the files, each shuffled from the seed and the epoch's number, starting after the stream's first
    `skip_records`; for evaluation, one ordered pass of the first `num_records` (0 = all). A read problem is ''
    for a record, and the text of a file whose reading stopped early (see _read_file).

    Several workers train on different files when there are enough, else on different records; every worker
    evaluates the whole set (the runtime accounts for the copies).
    """
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    shard_files = training and pipelines > 1 and len(files) >= pipelines
    file_names = tf.data.Dataset.from_tensor_slices((files, tf.constant(file_sizes(files), tf.int64)))
    if shard_files:
        file_names = file_names.shard(pipelines, pipeline_id)
    if not training:
        dataset = _records_with_origin(file_names, len(files))
        return dataset.take(num_records) if num_records else dataset

    def one_epoch(number):
        # Each epoch its own order, from the seed and the epoch's number alone: a resumed stream can start at
        # any epoch without replaying the ones before it.
        epoch_seed = tf.constant(seed, tf.int64) * EPOCH_SEED_STRIDE + number
        # The shuffles' other seed is this function graph's, which TensorFlow copies from the global seed
        # (--seed): a fixed one keeps the order a function of epoch_seed alone, and a global seed of 0 would
        # make TensorFlow test the tensor epoch_seed as a Python bool (--seed=0 failed to start).
        tf.random.set_seed(EPOCH_GRAPH_SEED)
        dataset = _records_with_origin(file_names.shuffle(len(files), seed=epoch_seed), len(files))
        if pipelines > 1 and not shard_files:
            dataset = dataset.shard(pipelines, pipeline_id)
        return dataset.shuffle(SHUFFLE_BUFFER_RECORDS, seed=epoch_seed)

    first_epoch, skip_in_epoch = 0, skip_records
    if skip_records:
        per_epoch = _records_per_epoch(files, pipelines, pipeline_id, shard_files)
        if per_epoch:
            first_epoch, skip_in_epoch = divmod(skip_records, per_epoch)
        logging.info("the stream resumes in epoch %d (of %s records) after its first %d records, which are read "
                     "again but not decoded", first_epoch, per_epoch or "uncounted", skip_in_epoch)
    # Only read: the skipped records' images are never decoded.
    return tf.data.Dataset.range(first_epoch, MAX_EPOCHS).flat_map(one_epoch).skip(skip_in_epoch)


def _records_per_epoch(files: list[str], pipelines: int, pipeline_id: int, shard_files: bool) -> int | None:
    """Records one pipeline's epoch holds, counted from the files' framing (no record is parsed); None when a
    file's framing is damaged (its epoch then also holds an element for the break): the stream is then
    skipped from its first epoch."""
    if shard_files:
        files = files[pipeline_id::pipelines]  # what Dataset.shard keeps
    try:
        total = tfrecord_files.count_all_records(files, "training_data_path")
    except UserInputError as error:
        logging.warning("cannot count the training records (%s): the resumed stream is read from its start", error)
        return None
    if pipelines > 1 and not shard_files:
        total = (total - pipeline_id + pipelines - 1) // pipelines  # every pipelines-th record, from pipeline_id
    return total or None


def listed_files(paths: list[str], labels: list[int], *, training: bool, seed: int | None = None,
                 skip_records: int = 0, num_records: int = 0,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """(path, index, 1-based label, '', 0) of image files listed with their labels (class-folder input),
    sharded, shuffled and skipped as `records` does; the files themselves are read by the caller's decode step."""
    count = len(paths)
    dataset = tf.data.Dataset.from_tensor_slices((tf.constant(paths), tf.range(count, dtype=tf.int64),
                                                  tf.constant(labels, tf.int64), tf.fill([count], ""),
                                                  tf.zeros([count], tf.int64)))
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    if training:
        if pipelines > 1:
            dataset = dataset.shard(pipelines, pipeline_id)
        return dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat().skip(skip_records)
    return dataset.take(num_records) if num_records else dataset


def _first_that_works(compute, inputs: tuple, fallback):
    """compute(*inputs), or fallback(*inputs) when an op in compute fails (undecodable bytes, a parse error).

    TensorFlow has no try/except inside a graph; a one-element dataset whose failing element is dropped by
    ignore_errors, followed by the fallback, is one (fallback runs only when reached)."""
    attempt = tf.data.Dataset.from_tensors(inputs).map(compute).ignore_errors()
    return attempt.concatenate(tf.data.Dataset.from_tensors(inputs).map(fallback)).take(1).get_single_element()


def feature_kinds(serialized) -> tuple[tf.Tensor, tf.Tensor]:
    """(feature keys [n], kind [n]: 0 bytes_list, 1 float_list, 2 int64_list, -1 none) of a serialized
    tf.train.Example, read with the proto decoder: works whatever types the record holds (parse_example
    fails on the first wrong one without saying which)."""
    _, (features,) = tf.io.decode_proto(serialized, "tensorflow.Example", ["features"], [tf.string])
    _, (entries,) = tf.io.decode_proto(features, "tensorflow.Features", ["feature"], [tf.string])
    _, (keys, values) = tf.io.decode_proto(tf.reshape(entries, [-1]), "tensorflow.Features.FeatureEntry",
                                           ["key", "value"], [tf.string, tf.string])
    present, _ = tf.io.decode_proto(tf.reshape(values, [-1]), "tensorflow.Feature", list(_FEATURE_KINDS),
                                    [tf.string] * 3)
    kind = tf.where(tf.reduce_any(present > 0, axis=1), tf.argmax(present, axis=1, output_type=tf.int32), -1)
    return tf.reshape(keys, [-1]), kind


def _with_article(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _kind_problem(prefix, serialized, expected_kinds: dict):
    """The sentence for a record that is not a tf.train.Example or has a feature of the wrong type, else ''."""

    def wrong_kind(serialized_):
        keys, kinds = feature_kinds(serialized_)
        problems = []
        for key, expected in expected_kinds.items():
            found = tf.boolean_mask(kinds, tf.equal(keys, key))
            actual = tf.cond(tf.size(found) > 0, lambda: found[0], lambda: tf.constant(-1))
            name = tf.gather(tf.constant([_with_article(kind) for kind in _FEATURE_KINDS]), tf.maximum(actual, 0))
            problems.append(tf.where((actual >= 0) & (actual != _FEATURE_KINDS.index(expected)), tf.strings.join([
                prefix, f" stores '{key}' as ", name, f"; it must be {_with_article(expected)} (as every other "
                "record and the documented format have it): fix the converter that wrote it"]), ""))
        texts = tf.stack(problems)
        return tf.cond(tf.reduce_any(texts != ""), lambda: tf.boolean_mask(texts, texts != "")[0],
                       lambda: tf.constant(""))

    return _first_that_works(wrong_kind, (serialized,), lambda serialized_: tf.strings.join(
        [prefix, " is not a tf.train.Example (a corrupt or foreign record); every record must be a serialized "
         "tf.train.Example"]))


def image_skip_reason(prefix, encoded, max_pixels: int):
    """'<prefix>: its image ...' — why an image that failed to decode is skipped."""
    pixels = _first_that_works(image_ops.header_pixels, (encoded,), lambda encoded_: tf.constant(0, tf.int64))
    return tf.cond(
        pixels > max_pixels,
        lambda: tf.strings.join([prefix, ": its image has ", tf.strings.as_string(pixels),
                                 f" pixels, more than --max_image_pixels={max_pixels}"]),
        lambda: tf.strings.join([prefix, ": its image bytes cannot be decoded (not a complete JPEG, PNG, GIF or "
                                 "BMP image)"]))


def _log_skip(counters: RecordCounters, weight, reason):
    """Counts a skipped record (or a broken file's lost records) and logs it, rate-limited."""
    after = counters.skipped.assign_add(weight)
    before = after - weight
    digits = lambda value: tf.strings.length(tf.strings.as_string(value))  # noqa: E731 - powers of ten crossed
    log = (before < SKIPS_LOGGED_EACH) | (digits(after) > digits(before))
    suffix = tf.where(tf.equal(after, SKIPS_LOGGED_EACH), " (from now on only the 100th, 1000th, ... skipped "
                      "record is logged; the summary after each evaluation counts them all)", "")

    def emit():
        with tf.control_dependencies([tf.print(tf.strings.join(["WARNING: skipped ", reason, suffix]),
                                               output_stream=sys.stderr)]):
            return tf.constant(True)

    return tf.cond(log, emit, lambda: tf.constant(False))


def _reread(path, index, listed: bool):
    """The payload of one record again (or the bytes of a listed image file), '' when it cannot be read."""
    if listed:
        return _first_that_works(tf.io.read_file, (path,), lambda path_: tf.constant(b""))
    return _first_that_works(
        lambda path_, index_: tf.data.TFRecordDataset(path_).skip(index_).take(1).get_single_element(),
        (path, index), lambda path_, index_: tf.constant(b""))


def element_seed(stream_seed: tf.Tensor, position) -> tf.Tensor:
    """The stateless seed [2] of the record at `position` of a stream: the same record at the same position
    gets the same augmentation in every run with that seed, whichever thread decodes it and wherever a
    resumed run picks the stream up."""
    return tf.random.experimental.stateless_fold_in(stream_seed, position)


def stream_seed(seed: int, input_context: tf.distribute.InputContext | None) -> tf.Tensor:
    """The base seed [2] of one input pipeline's stream (pipelines of one run draw apart)."""
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    return tf.constant([seed, pipeline_id], tf.int64)


def _as_written(function):
    """tf.data converts a map function with AutoGraph, and every function it calls, on every trace: seconds of
    each job's start-up. The pipeline's functions (and the tasks' `parse`, `problem_text` and `finish`) are
    written as graph code (tf.cond, tf.where), so they are traced as they are."""
    return tf.autograph.experimental.do_not_convert(function)


def decode_counted(records_dataset: tf.data.Dataset, *, parse, problem_text, finish, blank,
                   counters: RecordCounters, training: bool, max_pixels: int, expected_kinds: dict | None = None,
                   image_key: str = feature_keys.IMAGE, seeds: tf.Tensor | None = None,
                   first_position: int = 0) -> tf.data.Dataset:
    """Decodes the elements of `records` (or of `listed_files` when `parse` is None) into examples; stops the
    job on a structural problem, with the record's own sentence; skips, counts and logs (with file and record)
    records whose image cannot be decoded and, in training, the unread rest of a broken file.

    parse(serialized) -> features (a dict of tensors; the image bytes under image_key); listed files: the
        payload is the label and the file at `path` is the image.
    problem_text(path, index, features) -> '' when usable, else why not (missing key, label out of range...).
    finish(uint8 image [h, w, 3], features, seed) -> the example tuple, its random draws (if any) stateless
        from `seed` [2] (element_seed of `seeds`, the stream's seed, and the record's position in the stream,
        which starts at `first_position`: the records a resumed stream skipped); blank() -> one of the same
        structure, standing in for a record that is not used.
    expected_kinds ({key: 'int64_list', ...}) names a feature of the wrong type when parsing fails.

    A record whose parse or decode fails is dropped by ignore_errors, which says nothing about which one it
    was (TensorFlow has no try/except in a graph, and guarding every record with a nested dataset costs ~40%
    of the pipeline's throughput). So every element is numbered, and the decode step first notes where its
    record came from (RecordCounters.remember); the decode map keeps the order, so a gap in the numbers after
    it names the dropped records, which are then read again and explained (rare, so its cost does not matter).
    """
    steps = _CountedDecoding(parse=parse, problem_text=problem_text, finish=finish, blank=blank, counters=counters,
                             training=training, max_pixels=max_pixels, expected_kinds=expected_kinds,
                             image_key=image_key, seeds=tf.zeros([2], tf.int64) if seeds is None else seeds)
    numbered = steps.numbered(records_dataset, first_position)
    decoded = numbered.map(_as_written(steps.decode), num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True).ignore_errors()
    accounted = decoded.scan(tf.constant(first_position, tf.int64), _as_written(steps.account))
    return accounted.filter(lambda example, keep: keep).map(lambda example, keep: example)


class _CountedDecoding:
    """The steps of decode_counted, each one graph function: number, decode (in parallel, failures dropped),
    then account (sequential: finds each gap, explains it by reading its record again, counts and logs)."""

    def __init__(self, *, parse, problem_text, finish, blank, counters: RecordCounters, training: bool,
                 max_pixels: int, expected_kinds: dict | None, image_key: str, seeds: tf.Tensor):
        self.parse, self.problem_text, self.finish, self.blank = parse, problem_text, finish, blank
        self.counters, self.training, self.max_pixels = counters, training, max_pixels
        self.expected_kinds, self.image_key, self.seeds = expected_kinds, image_key, seeds
        self.listed = parse is None

    def numbered(self, records_dataset: tf.data.Dataset, first_position: int) -> tf.data.Dataset:
        """(position, element); evaluation gets one more element (index -1) after the last, so that failures
        at the end leave a gap too."""
        if not self.training:
            end = (tf.constant(""), tf.constant(-1, tf.int64),
                   tf.constant(0, tf.int64) if self.listed else tf.constant(b""), tf.constant(""),
                   tf.constant(0, tf.int64))
            records_dataset = records_dataset.concatenate(tf.data.Dataset.from_tensors(end))
        return records_dataset.enumerate(start=first_position)

    def decode(self, position, element):
        """(example, problem, skip reason); fails (and is dropped) when the record cannot be parsed or decoded.
        One branch only (decode or not): each branch is a function call on every record."""
        path, index, payload, read_problem, lost = element
        with tf.control_dependencies([self.counters.remember(position, path, index)]):  # before anything can fail
            payload = tf.identity(payload)
        is_end = index < 0
        usable_element = tf.equal(read_problem, "") & ~is_end
        if self.listed:
            features, problem = payload, tf.constant("")
            encoded = tf.cond(usable_element, lambda: tf.io.read_file(path), lambda: tf.constant(b""))
        else:
            features = self.parse(payload)  # the end marker's empty payload parses as an empty example
            problem = self.problem_text(path, index, features)
            encoded = tf.concat([features[self.image_key], [b""]], 0)[0]
        # Too many pixels is read from the header and skipped by name, never decoded.
        pixels = image_ops.header_pixels(encoded)
        too_large = pixels > self.max_pixels
        reason = tf.where(too_large, tf.strings.join([where(path, index), ": its image has ", tf.strings.as_string(
            pixels), f" pixels, more than --max_image_pixels={self.max_pixels}"]), "")
        # Training carries on without the unread rest of a file; evaluation must not report a partial metric;
        # neither goes on when the storage itself keeps failing.
        broken_file = tf.not_equal(read_problem, "")
        if self.training:
            reason = tf.where(broken_file & (lost >= 0), read_problem, reason)
            problem = tf.where(usable_element, problem, tf.where(lost < 0, read_problem, ""))
        else:
            problem = tf.where(broken_file, read_problem, tf.where(is_end, "", problem))
        usable = usable_element & tf.equal(problem, "") & ~too_large
        example = tf.cond(usable, lambda: self.finish(image_ops.decode_rgb(encoded, None), features,
                                                      element_seed(self.seeds, position)), self.blank)
        return position, example, problem, reason, lost, is_end

    def explain(self, path, index):
        """(problem, skip reason) of a record that failed to parse or decode, read again."""
        prefix = where(path, index)
        payload = _reread(path, index, self.listed)
        if self.listed:
            return tf.constant(""), image_skip_reason(prefix, payload, self.max_pixels)
        kind_problem = _kind_problem(prefix, payload, self.expected_kinds)
        readable = tf.equal(kind_problem, "")
        features = self.parse(tf.where(readable, payload, b""))
        problem = tf.cond(readable, lambda: self.problem_text(path, index, features), lambda: kind_problem)

        def image_reason():
            encoded = features[self.image_key]
            return image_skip_reason(prefix, tf.cond(tf.size(encoded) > 0, lambda: encoded[0],
                                                     lambda: tf.constant(b"")), self.max_pixels)

        return problem, tf.cond(tf.equal(problem, ""), image_reason, lambda: tf.constant(""))

    def explain_gap(self, expected, missing):
        """(problem, skip reason) of the `missing` records before this element: the first one explained, the
        others (rare: consecutive failures) only named."""
        paths, indices, known = self.counters.origins(expected, expected + tf.minimum(missing, NAMED_IN_A_GAP))
        gap_problem, gap_reason = tf.cond(known[0], lambda: self.explain(paths[0], indices[0]), lambda: (
            tf.constant(""), tf.strings.join([tf.strings.as_string(missing), " input element(s) failed before "
                                              "their file and record were known (see the errors logged above)"])))
        others = tf.strings.reduce_join(tf.strings.as_string(indices[1:]), separator=", ")
        unnamed = missing - tf.minimum(missing, NAMED_IN_A_GAP)
        more = tf.strings.join([" (also skipped: records ", others, " of their files", tf.where(
            unnamed > 0, tf.strings.join([", and ", tf.strings.as_string(unnamed), " more"]), ""), ")"])
        return gap_problem, tf.where((missing > 1) & tf.not_equal(gap_reason, ""),
                                     tf.strings.join([gap_reason, more]), gap_reason)

    def log_skips(self, expected, missing, problem, reason, lost):
        """Logs and counts the gap's records and this element's own skip; the problem that stops the job."""
        gap_problem, gap_reason = tf.cond(missing > 0, lambda: self.explain_gap(expected, missing),
                                          lambda: (tf.constant(""), tf.constant("")))
        logged = [tf.cond(tf.not_equal(gap_reason, ""), lambda: _log_skip(self.counters, missing, gap_reason),
                          lambda: tf.constant(False))]
        logged.append(tf.cond(tf.not_equal(reason, ""), lambda: _log_skip(self.counters, tf.maximum(lost, 1), reason),
                              lambda: tf.constant(False)))
        with tf.control_dependencies(logged):
            return tf.where(tf.equal(gap_problem, ""), problem, gap_problem)

    def account(self, expected, element):
        """Sequential: finds the gap before each element, counts, logs and checks; (next position, (example,
        keep))."""
        position, example, problem, reason, lost, is_end = element
        missing = position - expected
        # Most records: nothing skipped, one branch not taken.
        problem = tf.cond((missing > 0) | tf.not_equal(reason, ""),
                          lambda: self.log_skips(expected, missing, problem, reason, lost), lambda: problem)
        records_ = missing + tf.where(is_end, tf.constant(0, tf.int64), tf.maximum(lost, 1))
        failed = tf.debugging.Assert(tf.equal(problem, ""), [tf.strings.join([DATA_ERROR_MARKER, problem])])
        with tf.control_dependencies([failed, self.counters.attempted.assign_add(records_)]):
            keep = tf.equal(reason, "") & ~is_end
            return position + 1, (tf.nest.map_structure(tf.identity, example), keep)


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
    options.deterministic = True  # training too: the same seed gives the same batches (see decode_counted)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
