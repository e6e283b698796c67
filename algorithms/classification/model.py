"""The classifier: a backbone, global average pooling, dropout and a dense head sized to num_classes."""

import keras
import tensorflow as tf

from algorithms import backbones

MODEL_TYPES = tuple(f"resnet-{d}" for d in backbones.RESNET_DEPTHS) + tuple(backbones.EFFICIENTNETS)


def native_image_size(model_type: str) -> int:
    if model_type in backbones.EFFICIENTNETS:
        return backbones.EFFICIENTNETS[model_type][1]
    return backbones.RESNET_NATIVE_SIZE


class ImageClassifier(keras.Model):
    """0..255 images -> logits [b, num_classes]. `backbone` and `head` are separate attributes so a
    checkpoint's backbone can warm-start a model whose head has another size."""

    def __init__(self, model_type: str, image_size: int, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.backbone = backbones.build_feature_extractor(model_type, image_size)
        self.pool = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        dropout_rate = backbones.EFFICIENTNETS[model_type][2] if model_type in backbones.EFFICIENTNETS else 0.0
        self.dropout = keras.layers.Dropout(dropout_rate, name="top_dropout")
        # float32 logits whatever the compute dtype: the softmax and the loss need the range.
        self.head = keras.layers.Dense(num_classes, name="logits", dtype="float32")
        self(tf.zeros([1, image_size, image_size, 3]))  # build every variable now

    def call(self, images, training=False):
        features = self.backbone(images, training=training)
        features = self.dropout(self.pool(features), training=training)
        return self.head(features)
