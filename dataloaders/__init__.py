"""The trainers' tf.data input: finding and checking TFRecords, parsing, decoding, augmentation, batching.
The offline converters that write those TFRecords live in data/."""
