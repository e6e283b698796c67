"""The tf.train.Example keys of the built-in algorithms' TFRecords, spelled once for the converters, the input
pipelines, routing and the tests."""

IMAGE = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
COLORSPACE = "image/colorspace"
FILENAME = "image/filename"
SOURCE_ID = "image/source_id"

# Classification: one 1-based label per image.
CLASS_LABEL = "image/class/label"
CLASS_SYNSET = "image/class/synset"

# Detection: per-object lists of normalized box corners, 1-based labels and optional extras.
BOX_YMIN = "image/object/bbox/ymin"
BOX_XMIN = "image/object/bbox/xmin"
BOX_YMAX = "image/object/bbox/ymax"
BOX_XMAX = "image/object/bbox/xmax"
BOXES = (BOX_YMIN, BOX_XMIN, BOX_YMAX, BOX_XMAX)
OBJECT_LABEL = "image/object/class/label"
OBJECT_TEXT = "image/object/class/text"
OBJECT_IS_CROWD = "image/object/is_crowd"
OBJECT_AREA = "image/object/area"
