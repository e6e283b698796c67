"""The TFRecord framing without TensorFlow: each record is
`uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`, little-endian
(tensorflow/core/lib/io/record_writer.h). The trainer's checks read files with it before TensorFlow's runtime
may start (dataloaders/tfrecord_files.py); the converter's Beam workers write shards with it, so neither
TensorFlow (seconds of start-up per worker) nor a Beam sink (every record through the runner) is in their way.
"""

import struct
from typing import BinaryIO

import google_crc32c


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_record(handle: BinaryIO, data: bytes) -> None:
    length = struct.pack("<Q", len(data))
    handle.write(length)
    handle.write(struct.pack("<I", masked_crc32c(length)))
    handle.write(data)
    handle.write(struct.pack("<I", masked_crc32c(data)))


def next_length(handle: BinaryIO) -> tuple[int | None, str | None]:
    """The data length in the next record's 12-byte header: (length, None); (None, None) at the end of the file;
    (None, 'cut') when the file ends inside the header, (None, 'corrupt') when its checksum does not match."""
    header = handle.read(12)
    if not header:
        return None, None
    if len(header) < 12:
        return None, "cut"
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        return None, "corrupt"
    return length, None


def next_record(handle: BinaryIO, offset: int | None = None,
                size: int | None = None) -> tuple[bytes | None, str | None]:
    """(record, None) for the next record of an open TFRecord file; (None, None) at its end; (None, 'cut') when
    the file ends inside the record, (None, 'corrupt') when a checksum does not match. With `size`, a length
    that runs past the end is 'cut' before its data is read."""
    length, damage = next_length(handle)
    if length is None:
        return None, damage
    if size is not None and offset + 16 + length > size:
        return None, "cut"
    data = handle.read(length)
    footer = handle.read(4)
    if len(data) < length or len(footer) < 4:
        return None, "cut"
    if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        return None, "corrupt"
    return data, None
