"""The offline converters (Apache Beam, no TensorFlow): images + CSV, class folders, COCO JSON and box CSVs ->
TFRecords of tf.train.Example, and the sample datasets. The trainers' tf.data input lives in dataloaders/."""
