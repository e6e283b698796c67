"""The TFRecord file format without TensorFlow: each record is
`uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`, little-endian
(tensorflow/core/lib/io/record_writer.h). The converter's workers write shards with it directly, so neither
TensorFlow (seconds of start-up per worker) nor a Beam sink (every record through the runner) is in the way.
"""

import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF)


def write_record(handle: BinaryIO, data: bytes) -> None:
    length = struct.pack("<Q", len(data))
    handle.write(length)
    handle.write(_masked_crc(length))
    handle.write(data)
    handle.write(_masked_crc(data))


class CorruptRecordError(ValueError):
    pass


def read_records(handle: BinaryIO) -> Iterator[bytes]:
    """Every record of an open TFRecord file, checking both checksums of each."""
    while header := handle.read(12):
        if len(header) < 12 or _masked_crc(header[:8]) != header[8:]:
            raise CorruptRecordError("a record's length is truncated or fails its checksum")
        (length,) = struct.unpack("<Q", header[:8])
        data, footer = handle.read(length), handle.read(4)
        if len(data) < length or _masked_crc(data) != footer:
            raise CorruptRecordError("a record's data is truncated or fails its checksum")
        yield data
