"""The classifier: a backbone, global average pooling, dropout and a dense head sized to num_classes."""

import keras
import tensorflow as tf

from algorithms import backbones

MODEL_TYPES = backbones.MODEL_TYPES


class ImageClassifier(keras.Model):
    """0..255 images -> logits [b, num_classes]. `backbone` and `head` are separate attributes so a
    checkpoint's backbone can warm-start a model whose head has another size."""

    def __init__(self, model_type: str, image_size: int, num_classes: int, dropout_rate: float | None = None,
                 resnet_from_preset: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.backbone = backbones.build_feature_extractor(model_type, image_size,
                                                          resnet_from_preset=resnet_from_preset)
        self.pool = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        rate = backbones.spec(model_type).dropout if dropout_rate is None else dropout_rate
        self.dropout = keras.layers.Dropout(rate, name="top_dropout")
        # float32 logits whatever the compute dtype: the softmax and the loss need the range.
        self.head = keras.layers.Dense(num_classes, name="logits", dtype="float32")
        self(tf.zeros([1, image_size, image_size, 3]))  # build every variable now

    def call(self, images, training=False):
        features = self.backbone(images, training=training)
        features = self.dropout(self.pool(features), training=training)
        return self.head(features)
