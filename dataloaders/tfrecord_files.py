"""Finding and inspecting TFRecord files (local paths and gs:// alike, through tf.io.gfile)."""

import tensorflow as tf

from core.errors import UserInputError
from core.paths import describe_io_error
from core.tfrecord_framing import next_length, next_record

_GLOB_CHARS = set("*?[")


def resolve_files(pattern: str | None, flag_name: str) -> list[str]:
    """Expands a file glob to a sorted list of files, or raises a UserInputError naming the flag."""
    if not pattern:
        raise UserInputError(f"--{flag_name} is required: a TFRecord file or glob, e.g. gs://my-bucket/data/train-*")
    try:
        files = sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as error:
        raise UserInputError(f"--{flag_name}={pattern} cannot be listed: {describe_io_error(pattern, error)}") from None
    if not files:
        raise UserInputError(f"--{flag_name}={pattern} matches no file; check the path and the glob "
                             "(e.g. gs://my-bucket/data/train-* or /data/train-?????-of-?????)")
    if len(files) == 1 and not (_GLOB_CHARS & set(pattern)) and tf.io.gfile.isdir(files[0]):
        raise UserInputError(f"--{flag_name}={pattern} is a directory; point at the TFRecord files inside it, "
                             f"e.g. --{flag_name}={pattern.rstrip('/')}/*")
    return files


def read_records(path: str, limit: int) -> list[bytes]:
    """Reads up to `limit` serialized records of one file, turning I/O errors into clear messages.

    Reads the TFRecord framing itself through tf.io.gfile (local and gs://) rather than with tf.data: checks
    that run before the job's distribution strategy exists must not start TensorFlow's runtime, or
    MultiWorkerMirroredStrategy can no longer be created.
    """
    records = []
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            while len(records) < limit:
                record, damage = next_record(handle)
                if damage:
                    raise UserInputError(
                        f"{path} is not a readable TFRecord file (corrupted or another format); convert images with "
                        "`python -m data.jpeg_to_tf_record` or write tf.Examples with tf.io.TFRecordWriter")
                if record is None:
                    break
                records.append(record)
    except tf.errors.OpError as error:
        raise UserInputError(f"cannot read {path}: {describe_io_error(path, error)}") from None
    return records


def _count_file_records(path: str) -> int:
    """Records of one file from its framing alone: each length is read and the record skipped."""
    count, offset = 0, 0
    with tf.io.gfile.GFile(path, "rb") as handle:
        while True:
            length, damage = next_length(handle)
            if damage:
                raise UserInputError(f"{path}: the TFRecord framing is damaged at byte {offset}, so its records cannot "
                                     "be counted; re-upload or re-convert it")
            if length is None:
                return count
            offset += 16 + length
            handle.seek(offset)
            count += 1


def count_all_records(files: list[str], flag_name: str) -> int:
    """All records of the files, counted from the framing (data skipped, files in parallel), without starting
    TensorFlow's runtime (see read_records)."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(max_workers=min(16, len(files) or 1)) as pool:
            return sum(pool.map(_count_file_records, files))
    except tf.errors.OpError as error:
        raise UserInputError(f"--{flag_name}: cannot count the records: {describe_io_error(files[0], error)}") from None


def damage_at(path: str, offset: int, size: int) -> str | None:
    """What is wrong with the TFRecord framing of the record starting at byte `offset` of `path` (of `size`
    bytes): 'cut' (the file ends inside it), 'corrupt' (a checksum does not match), or None when it reads
    correctly. I/O errors propagate (tf.errors.OpError)."""
    with tf.io.gfile.GFile(path, "rb") as handle:
        handle.seek(offset)
        record, damage = next_record(handle, offset, size)
    return None if record is not None else damage or "cut"  # no record at all where one was due: cut


def first_example(files: list[str], flag_name: str, max_files: int = 10) -> tuple[str, tf.train.Example]:
    """The first record of the first non-empty file (looking at up to `max_files` files), parsed."""
    for path in files[:max_files]:
        records = read_records(path, 1)
        if records:
            try:
                return path, tf.train.Example.FromString(records[0])
            except Exception:  # a protobuf DecodeError: the record is not a tf.train.Example
                raise UserInputError(f"record 0 of {path} is not a tf.train.Example; each record must be a "
                                     "serialized tf.train.Example with the documented image/... keys") from None
    raise UserInputError(f"--{flag_name}: the first {min(len(files), max_files)} file(s) it matches hold no records "
                         f"(first: {files[0]})")


def count_records(files: list[str], limit: int) -> int:
    """Counts records across files, stopping once `limit` are found (so a check costs at most `limit` reads)."""
    total = 0
    for path in files:
        total += len(read_records(path, limit - total))
        if total >= limit:
            break
    return total


def example_feature_keys(example: tf.train.Example) -> set[str]:
    return set(example.features.feature.keys())


def int64_values(example: tf.train.Example, key: str) -> list[int]:
    feature = example.features.feature.get(key)
    return list(feature.int64_list.value) if feature is not None else []
