"""tf.train.Example builders with the built-in algorithms' documented keys (core/feature_keys.py).

The messages are built from TensorFlow's own example.proto / feature.proto schema with the protobuf library
alone (a private descriptor pool, the same full names and field numbers), so their bytes are exactly
tf.train.Example's while the converters' Beam workers never import TensorFlow: that saves each worker
process ~4 s of start-up and keeps TensorFlow off Dataflow workers.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from core import feature_keys as keys

_FIELD = descriptor_pb2.FieldDescriptorProto


def _schema() -> descriptor_pb2.FileDescriptorProto:
    """tensorflow/core/example/{feature,example}.proto: Example{Features features = 1}, Features{map<string,
    Feature> feature = 1}, Feature{oneof kind: BytesList 1, FloatList 2, Int64List 3}."""
    schema = descriptor_pb2.FileDescriptorProto(name="example_codec/example.proto", package="tensorflow",
                                                syntax="proto3")

    def message(name, *fields, nested=()):
        proto = schema.message_type.add(name=name)
        for field_name, number, field_type, label, type_name, oneof in fields:
            field = proto.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name
            if oneof is not None:
                field.oneof_index = oneof
        for nested_proto in nested:
            proto.nested_type.add().CopyFrom(nested_proto)
        return proto

    repeated, optional = _FIELD.LABEL_REPEATED, _FIELD.LABEL_OPTIONAL
    message("BytesList", ("value", 1, _FIELD.TYPE_BYTES, repeated, None, None))
    float_list = message("FloatList", ("value", 1, _FIELD.TYPE_FLOAT, repeated, None, None))
    float_list.field[0].options.packed = True
    int64_list = message("Int64List", ("value", 1, _FIELD.TYPE_INT64, repeated, None, None))
    int64_list.field[0].options.packed = True
    feature = message("Feature", ("bytes_list", 1, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.BytesList", 0),
                      ("float_list", 2, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.FloatList", 0),
                      ("int64_list", 3, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.Int64List", 0))
    feature.oneof_decl.add(name="kind")
    entry = descriptor_pb2.DescriptorProto(name="FeatureEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, type=_FIELD.TYPE_STRING, label=optional)
    entry.field.add(name="value", number=2, type=_FIELD.TYPE_MESSAGE, label=optional,
                    type_name=".tensorflow.Feature")
    message("Features", ("feature", 1, _FIELD.TYPE_MESSAGE, repeated, ".tensorflow.Features.FeatureEntry", None),
            nested=[entry])
    message("Example", ("features", 1, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.Features", None))
    return schema


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_schema())
_CLASSES = {name: message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"tensorflow.{name}"))
            for name in ("Example", "Features", "Feature", "BytesList", "FloatList", "Int64List")}
Example, Features, Feature = _CLASSES["Example"], _CLASSES["Features"], _CLASSES["Feature"]


def _bytes(values):
    return Feature(bytes_list=_CLASSES["BytesList"](value=values))


def _ints(values):
    return Feature(int64_list=_CLASSES["Int64List"](value=values))


def classification_example(encoded: bytes, label: int, *, height: int, width: int, image_format: str,
                           filename: str = "", synset: str = "", channels: int = 3) -> Example:
    """One image with its 1-based class label, as jpeg_to_tf_record.py writes it."""
    return Example(features=Features(feature={
        keys.IMAGE: _bytes([encoded]),
        keys.CLASS_LABEL: _ints([label]),
        keys.CLASS_SYNSET: _bytes([synset.encode()]),
        keys.HEIGHT: _ints([height]),
        keys.WIDTH: _ints([width]),
        keys.CHANNELS: _ints([channels]),
        keys.COLORSPACE: _bytes([b"RGB"]),
        keys.FORMAT: _bytes([image_format.upper().encode()]),
        keys.FILENAME: _bytes([filename.encode()]),
    }))


def _floats(values):
    return Feature(float_list=_CLASSES["FloatList"](value=values))


def detection_example(encoded: bytes, boxes, labels, *, height: int, width: int, image_format: str,
                      source_id: str = "", filename: str = "", class_names=(), is_crowd=None,
                      areas=None) -> Example:
    """One image with its boxes ([ymin, xmin, ymax, xmax] normalized to [0, 1]) and 1-based labels, with the
    keys of the upstream detection decoder (create_coco_tf_record.py)."""
    boxes = [list(map(float, box)) for box in boxes]
    feature = {
        keys.IMAGE: _bytes([encoded]),
        keys.FORMAT: _bytes([image_format.lower().encode()]),
        keys.HEIGHT: _ints([height]),
        keys.WIDTH: _ints([width]),
        keys.SOURCE_ID: _bytes([source_id.encode()]),
        keys.FILENAME: _bytes([filename.encode()]),
        keys.BOX_YMIN: _floats([b[0] for b in boxes]),
        keys.BOX_XMIN: _floats([b[1] for b in boxes]),
        keys.BOX_YMAX: _floats([b[2] for b in boxes]),
        keys.BOX_XMAX: _floats([b[3] for b in boxes]),
        keys.OBJECT_LABEL: _ints([int(label) for label in labels]),
        keys.OBJECT_TEXT: _bytes([name.encode() for name in class_names]),
        keys.OBJECT_IS_CROWD: _ints([int(c) for c in (is_crowd if is_crowd is not None else [0] * len(boxes))]),
    }
    if areas is not None:
        feature[keys.OBJECT_AREA] = _floats([float(a) for a in areas])
    return Example(features=Features(feature=feature))
