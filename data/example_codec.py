"""tf.train.Example builders with the documented keys (fact sheet §3 and §8)."""

import tensorflow as tf


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def classification_example(encoded: bytes, label: int, *, height: int, width: int, image_format: str,
                           filename: str = "", synset: str = "", channels: int = 3) -> tf.train.Example:
    """One image with its 1-based class label, as jpeg_to_tf_record.py writes it."""
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _bytes([encoded]),
        "image/class/label": _ints([label]),
        "image/class/synset": _bytes([synset.encode()]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/channels": _ints([channels]),
        "image/colorspace": _bytes([b"RGB"]),
        "image/format": _bytes([image_format.upper().encode()]),
        "image/filename": _bytes([filename.encode()]),
    }))
