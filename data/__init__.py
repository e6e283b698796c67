"""Input data: TFRecord files, tf.Example parsing and validation, image preprocessing, sample datasets."""
