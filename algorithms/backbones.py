"""Backbones built from configs (no downloads): KerasHub ResNet for every depth, keras.applications
EfficientNet B0-B7. Every backbone here takes float32 RGB in 0..255 and normalises inside its own graph."""

import keras
import keras_hub

from data.image_ops import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB

# depth -> (blocks per stage, block type); the standard ResNet family.
RESNET_DEPTHS = {
    18: ([2, 2, 2, 2], "basic_block"),
    34: ([3, 4, 6, 3], "basic_block"),
    50: ([3, 4, 6, 3], "bottleneck_block"),
    101: ([3, 4, 23, 3], "bottleneck_block"),
    152: ([3, 8, 36, 3], "bottleneck_block"),
    200: ([3, 24, 36, 3], "bottleneck_block"),
}
# name -> (constructor, native resolution, dropout before the classifier) as in the EfficientNet paper.
EFFICIENTNETS = {
    "efficientnet-b0": (keras.applications.EfficientNetB0, 224, 0.2),
    "efficientnet-b1": (keras.applications.EfficientNetB1, 240, 0.2),
    "efficientnet-b2": (keras.applications.EfficientNetB2, 260, 0.3),
    "efficientnet-b3": (keras.applications.EfficientNetB3, 300, 0.3),
    "efficientnet-b4": (keras.applications.EfficientNetB4, 380, 0.4),
    "efficientnet-b5": (keras.applications.EfficientNetB5, 456, 0.4),
    "efficientnet-b6": (keras.applications.EfficientNetB6, 528, 0.5),
    "efficientnet-b7": (keras.applications.EfficientNetB7, 600, 0.5),
}
RESNET_NATIVE_SIZE = 224


def build_resnet_encoder(depth: int, image_shape=(None, None, 3)) -> keras_hub.models.ResNetBackbone:
    """The KerasHub ResNet (v1) of the given depth; exposes `pyramid_outputs` P2-P5 for detectors."""
    blocks, block_type = RESNET_DEPTHS[depth]
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=blocks, stackwise_num_strides=[1, 2, 2, 2], block_type=block_type,
        image_shape=image_shape, name=f"resnet{depth}")


def imagenet_normalization() -> keras.layers.Layer:
    return keras.layers.Normalization(mean=list(IMAGENET_MEAN_RGB), variance=[s * s for s in IMAGENET_STDDEV_RGB],
                                      name="imagenet_normalization")


def build_feature_extractor(model_type: str, image_size: int) -> keras.Model:
    """0..255 images [b, s, s, 3] -> the last feature map."""
    inputs = keras.Input((image_size, image_size, 3), name="images")
    if model_type in EFFICIENTNETS:
        constructor = EFFICIENTNETS[model_type][0]
        # keras.applications EfficientNet rescales 0..255 itself.
        network = constructor(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
        return keras.Model(inputs, network(inputs), name=model_type.replace("-", "_"))
    depth = int(model_type.split("-")[1])
    encoder = build_resnet_encoder(depth, (image_size, image_size, 3))
    return keras.Model(inputs, encoder(imagenet_normalization()(inputs)), name=f"resnet_{depth}")
