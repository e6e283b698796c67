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


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def detection_example(encoded: bytes, boxes, labels, *, height: int, width: int, image_format: str,
                      source_id: str = "", filename: str = "", class_names=(), is_crowd=None,
                      areas=None) -> tf.train.Example:
    """One image with its boxes ([ymin, xmin, ymax, xmax] normalized to [0, 1]) and 1-based labels, with the
    keys of the upstream detection decoder (create_coco_tf_record.py)."""
    boxes = [list(map(float, box)) for box in boxes]
    feature = {
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([image_format.lower().encode()]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/source_id": _bytes([source_id.encode()]),
        "image/filename": _bytes([filename.encode()]),
        "image/object/bbox/ymin": _floats([b[0] for b in boxes]),
        "image/object/bbox/xmin": _floats([b[1] for b in boxes]),
        "image/object/bbox/ymax": _floats([b[2] for b in boxes]),
        "image/object/bbox/xmax": _floats([b[3] for b in boxes]),
        "image/object/class/label": _ints([int(label) for label in labels]),
        "image/object/class/text": _bytes([name.encode() for name in class_names]),
        "image/object/is_crowd": _ints([int(c) for c in (is_crowd if is_crowd is not None else [0] * len(boxes))]),
    }
    if areas is not None:
        feature["image/object/area"] = _floats([float(a) for a in areas])
    return tf.train.Example(features=tf.train.Features(feature=feature))
