"""Every backbone, as one table of named specs (BACKBONES): KerasHub ResNet at every depth; keras.applications
EfficientNet B0-B7, EfficientNetV2 B0-B3/S, MobileNetV2 and MobileNetV3. All are built from configs (nothing is
downloaded unless ImageNet weights are asked for), take float32 RGB in 0..255 and normalise inside their graph.

Add a backbone: one BackboneSpec line in BACKBONES; its name becomes a --model_type value (flags, help, the
README's table test and `make image PRETRAINED=` read the table). A keras.applications network needs nothing
else; a new family also needs its branch in build_feature_extractor.
"""

import dataclasses
from typing import Callable

import keras
import keras_hub

from core.errors import UserInputError, nearest
from dataloaders.image_ops import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB

KERAS_APPLICATIONS, KERAS_HUB = "keras.applications", "KerasHub"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str  # the --model_type value
    family: str  # resnet | efficientnet | efficientnetv2 | mobilenet: how it is built
    native_size: int  # the resolution it was designed and pretrained at: the default --image_size
    dropout: float  # before the classifier, as in its paper / keras.applications
    # What its first layer wants of 0..255 RGB: "imagenet" (mean/stddev normalised here), "0..255" (the network
    # rescales itself) or "-1..1" (rescaled here).
    input_range: str
    application: Callable | None = None  # the keras.applications constructor
    application_options: tuple = ()  # its extra (name, value) arguments
    resnet_depth: int | None = None
    resnet_blocks: tuple = ()  # blocks per stage
    resnet_block_type: str = ""
    imagenet_source: str | None = None  # where --pretrained_weights=imagenet comes from; None: nowhere
    # keras.applications: a fragment of its cached no-top weights file (KERAS_HOME/models); KerasHub: the preset.
    imagenet_cache_name: str | None = None
    # The feature levels a detector can take from it (level L: stride 2^L); () for classification only.
    pyramid_levels: tuple = ()


def _resnet(depth: int, blocks: tuple, block_type: str, preset: str | None = None) -> BackboneSpec:
    return BackboneSpec(f"resnet-{depth}", "resnet", 224, 0.0, "imagenet", resnet_depth=depth, resnet_blocks=blocks,
                        resnet_block_type=block_type, imagenet_source=KERAS_HUB if preset else None,
                        imagenet_cache_name=preset, pyramid_levels=(2, 3, 4, 5))


def _application(name: str, family: str, constructor, size: int, dropout: float, input_range: str,
                 cache_name: str, *options) -> BackboneSpec:
    return BackboneSpec(name, family, size, dropout, input_range, application=constructor, application_options=options,
                        imagenet_source=KERAS_APPLICATIONS, imagenet_cache_name=cache_name)


# MobileNetV3 rescales 0..255 itself when asked (the warning about sizes other than 224 only concerns weights).
_OWN_RESCALING = ("include_preprocessing", True)


_APPS = keras.applications
# In --model_type's documented order: the help text and the README list them so.
BACKBONES = {spec.name: spec for spec in (
    _resnet(18, (2, 2, 2, 2), "basic_block", "resnet_18_imagenet"),
    _resnet(34, (3, 4, 6, 3), "basic_block"),
    _resnet(50, (3, 4, 6, 3), "bottleneck_block", "resnet_50_imagenet"),
    _resnet(101, (3, 4, 23, 3), "bottleneck_block", "resnet_101_imagenet"),
    _resnet(152, (3, 8, 36, 3), "bottleneck_block", "resnet_152_imagenet"),
    _resnet(200, (3, 24, 36, 3), "bottleneck_block"),
    # Sizes and dropout rates of the EfficientNet paper.
    _application("efficientnet-b0", "efficientnet", _APPS.EfficientNetB0, 224, 0.2, "0..255", "efficientnetb0"),
    _application("efficientnet-b1", "efficientnet", _APPS.EfficientNetB1, 240, 0.2, "0..255", "efficientnetb1"),
    _application("efficientnet-b2", "efficientnet", _APPS.EfficientNetB2, 260, 0.3, "0..255", "efficientnetb2"),
    _application("efficientnet-b3", "efficientnet", _APPS.EfficientNetB3, 300, 0.3, "0..255", "efficientnetb3"),
    _application("efficientnet-b4", "efficientnet", _APPS.EfficientNetB4, 380, 0.4, "0..255", "efficientnetb4"),
    _application("efficientnet-b5", "efficientnet", _APPS.EfficientNetB5, 456, 0.4, "0..255", "efficientnetb5"),
    _application("efficientnet-b6", "efficientnet", _APPS.EfficientNetB6, 528, 0.5, "0..255", "efficientnetb6"),
    _application("efficientnet-b7", "efficientnet", _APPS.EfficientNetB7, 600, 0.5, "0..255", "efficientnetb7"),
    # What users pick for transfer learning (SageMaker / Keras tutorials).
    _application("mobilenet-v2", "mobilenet", _APPS.MobileNetV2, 224, 0.2, "-1..1", "mobilenet_v2"),
    _application("mobilenet-v3-small", "mobilenet", _APPS.MobileNetV3Small, 224, 0.2, "0..255", "mobilenet_v3_small",
                 _OWN_RESCALING),
    _application("mobilenet-v3-large", "mobilenet", _APPS.MobileNetV3Large, 224, 0.2, "0..255", "mobilenet_v3_large",
                 _OWN_RESCALING),
    _application("efficientnetv2-b0", "efficientnetv2", _APPS.EfficientNetV2B0, 224, 0.2, "0..255", "efficientnetv2-b0"),
    _application("efficientnetv2-b1", "efficientnetv2", _APPS.EfficientNetV2B1, 240, 0.2, "0..255", "efficientnetv2-b1"),
    _application("efficientnetv2-b2", "efficientnetv2", _APPS.EfficientNetV2B2, 260, 0.3, "0..255", "efficientnetv2-b2"),
    _application("efficientnetv2-b3", "efficientnetv2", _APPS.EfficientNetV2B3, 300, 0.3, "0..255", "efficientnetv2-b3"),
    _application("efficientnetv2-s", "efficientnetv2", _APPS.EfficientNetV2S, 384, 0.2, "0..255", "efficientnetv2-s"),
)}
MODEL_TYPES = tuple(BACKBONES)


def spec(model_type: str) -> BackboneSpec:
    """The spec of a --model_type value (any case, surrounding spaces ignored), or a one-line error listing them."""
    name = (model_type or "").strip().lower()
    if name not in BACKBONES:
        raise UserInputError(f"--model_type={model_type!r} is not a classifier backbone{nearest(name, MODEL_TYPES)}; "
                             f"use one of {', '.join(MODEL_TYPES)}")
    return BACKBONES[name]


def resnet_depths() -> tuple:
    """The ResNet depths, in order (resnet_main's and the detector's --resnet_depth)."""
    return tuple(s.resnet_depth for s in BACKBONES.values() if s.family == "resnet")


def detection_depths() -> tuple:
    """The ResNet depths a detector can be built on (those with feature levels 2-5)."""
    return tuple(s.resnet_depth for s in BACKBONES.values() if s.family == "resnet" and s.pyramid_levels)


def build_resnet_encoder(depth: int, image_shape=(None, None, 3)) -> keras_hub.models.ResNetBackbone:
    """The KerasHub ResNet (v1) of the given depth; exposes `pyramid_outputs` P2-P5 for detectors."""
    resnet = BACKBONES[f"resnet-{depth}"]
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=list(resnet.resnet_blocks), stackwise_num_strides=[1, 2, 2, 2],
        block_type=resnet.resnet_block_type, image_shape=image_shape, name=f"resnet{depth}")


def imagenet_normalization() -> keras.layers.Layer:
    return keras.layers.Normalization(mean=list(IMAGENET_MEAN_RGB), variance=[s * s for s in IMAGENET_STDDEV_RGB],
                                      name="imagenet_normalization")


def build_feature_extractor(model_type: str, image_size: int, weights: str | None = None,
                            resnet_from_preset: bool = False) -> keras.Model:
    """0..255 images [b, s, s, 3] -> the last feature map. weights: None (random) or "imagenet" (downloaded
    by keras.applications / KerasHub, or read from their caches). resnet_from_preset: a ResNet with the
    architecture of KerasHub's ImageNet preset (its weights only when weights="imagenet")."""
    backbone = spec(model_type)
    inputs = keras.Input((image_size, image_size, 3), name="images")
    if backbone.application is not None:
        network = backbone.application(include_top=False, weights=weights, input_shape=(image_size, image_size, 3),
                                       **dict(backbone.application_options))
        scaled = inputs
        if backbone.input_range == "-1..1":
            scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus_one_one")(inputs)
        return keras.Model(inputs, network(scaled), name=backbone.name.replace("-", "_"))
    depth = backbone.resnet_depth
    if weights == "imagenet" or resnet_from_preset:
        encoder = keras_hub.models.ResNetBackbone.from_preset(
            backbone.imagenet_cache_name, image_shape=(image_size, image_size, 3), load_weights=weights == "imagenet")
    else:
        encoder = build_resnet_encoder(depth, (image_size, image_size, 3))
    return keras.Model(inputs, encoder(imagenet_normalization()(inputs)), name=f"resnet_{depth}")
