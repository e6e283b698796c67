"""Backbones built from configs (no downloads unless ImageNet weights are asked for): KerasHub ResNet for
every depth; keras.applications EfficientNet B0-B7, EfficientNetV2 B0-B3/S, MobileNetV2 and MobileNetV3.
Every backbone here takes float32 RGB in 0..255 and normalises inside its own graph."""

import keras
import keras_hub

from dataloaders.image_ops import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB

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
# Backbones users pick for transfer learning (SageMaker / Keras tutorials): name -> (constructor, native
# resolution, dropout before the classifier, the range the network wants its input in).
TRANSFER_BACKBONES = {
    "mobilenet-v2": (keras.applications.MobileNetV2, 224, 0.2, "-1..1"),
    "mobilenet-v3-small": (keras.applications.MobileNetV3Small, 224, 0.2, "0..255"),
    "mobilenet-v3-large": (keras.applications.MobileNetV3Large, 224, 0.2, "0..255"),
    "efficientnetv2-b0": (keras.applications.EfficientNetV2B0, 224, 0.2, "0..255"),
    "efficientnetv2-b1": (keras.applications.EfficientNetV2B1, 240, 0.2, "0..255"),
    "efficientnetv2-b2": (keras.applications.EfficientNetV2B2, 260, 0.3, "0..255"),
    "efficientnetv2-b3": (keras.applications.EfficientNetV2B3, 300, 0.3, "0..255"),
    "efficientnetv2-s": (keras.applications.EfficientNetV2S, 384, 0.2, "0..255"),
}
# keras.applications networks: the same (constructor, native size, dropout) view of both tables.
APPLICATIONS = {**{name: (c, size, rate) for name, (c, size, rate) in EFFICIENTNETS.items()},
                **{name: (c, size, rate) for name, (c, size, rate, _) in TRANSFER_BACKBONES.items()}}
RESNET_NATIVE_SIZE = 224
# KerasHub presets with ImageNet weights for the ResNet depths that have one.
RESNET_IMAGENET_PRESETS = {18: "resnet_18_imagenet", 50: "resnet_50_imagenet", 101: "resnet_101_imagenet",
                           152: "resnet_152_imagenet"}


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


def native_image_size(model_type: str) -> int:
    return APPLICATIONS[model_type][1] if model_type in APPLICATIONS else RESNET_NATIVE_SIZE


def default_dropout(model_type: str) -> float:
    return APPLICATIONS[model_type][2] if model_type in APPLICATIONS else 0.0


def _application_network(model_type: str, image_size: int, weights: str | None) -> keras.Model:
    constructor = APPLICATIONS[model_type][0]
    shape = (image_size, image_size, 3)
    if model_type.startswith("mobilenet-v3"):
        # include_preprocessing: rescales 0..255 itself; the warning about non-224 sizes only concerns weights.
        return constructor(input_shape=shape, include_top=False, weights=weights, include_preprocessing=True)
    return constructor(include_top=False, weights=weights, input_shape=shape)


def build_feature_extractor(model_type: str, image_size: int, weights: str | None = None,
                            resnet_from_preset: bool = False) -> keras.Model:
    """0..255 images [b, s, s, 3] -> the last feature map. weights: None (random) or "imagenet" (downloaded
    by keras.applications / KerasHub, or read from their caches). resnet_from_preset: a ResNet with the
    architecture of KerasHub's ImageNet preset (its weights only when weights="imagenet")."""
    inputs = keras.Input((image_size, image_size, 3), name="images")
    if model_type in APPLICATIONS:
        network = _application_network(model_type, image_size, weights)
        scaled = inputs
        if model_type in TRANSFER_BACKBONES and TRANSFER_BACKBONES[model_type][3] == "-1..1":
            scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus_one_one")(inputs)
        # The other keras.applications networks rescale 0..255 themselves.
        return keras.Model(inputs, network(scaled), name=model_type.replace("-", "_"))
    depth = int(model_type.split("-")[1])
    if weights == "imagenet" or resnet_from_preset:
        encoder = keras_hub.models.ResNetBackbone.from_preset(
            RESNET_IMAGENET_PRESETS[depth], image_shape=(image_size, image_size, 3), load_weights=weights == "imagenet")
    else:
        encoder = build_resnet_encoder(depth, (image_size, image_size, 3))
    return keras.Model(inputs, encoder(imagenet_normalization()(inputs)), name=f"resnet_{depth}")
