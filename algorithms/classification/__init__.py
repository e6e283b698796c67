"""Image classification: ResNet-18..200 and EfficientNet-B0..B7 trained from 1-based-label TFRecords."""
