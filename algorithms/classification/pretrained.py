"""Where a classifier's pretrained backbone comes from (--pretrained_weights):

- `imagenet`: keras.applications' ImageNet weights (EfficientNet, EfficientNetV2, MobileNet) or KerasHub's
  ImageNet preset (ResNet 18/50/101/152), downloaded when the machine is online, else read from their caches
  (KERAS_HOME/models, KAGGLEHUB_CACHE) where an image build baked them in (`make image PRETRAINED=...`);
- a Keras `.weights.h5` file of the backbone (`model.backbone.save_weights(...)`);
- a KerasHub preset directory (`save_to_preset` layout: config.json + model.weights.h5);
- a checkpoint, job dir or exported model of this trainer (the same as --pretrained_checkpoint_path).

Offline with `imagenet` and nothing cached fails in seconds with what to do, not after minutes of retries.
"""

import glob
import os
import socket
import tempfile

import keras
import keras_hub
import tensorflow as tf
from absl import logging

from algorithms import backbones
from core.errors import UserInputError

DOWNLOAD_HOSTS = {"keras.applications": "storage.googleapis.com", "KerasHub": "www.kaggle.com"}
PROBE_SECONDS = 3.0
PROBE_ADDRESS_VARIABLE = "PRETRAINED_PROBE_ADDRESS"


def _cached_imagenet_files(backbone: backbones.BackboneSpec) -> list[str]:
    """keras.applications names its cached no-top weights efficientnetb0_notop.h5, efficientnetv2-b0_notop.h5,
    mobilenet_v2_..._no_top.h5, weights_mobilenet_v3_small_..._no_top_v2.h5; KerasHub keeps a preset folder."""
    if backbone.imagenet_source is None:
        return []
    if backbone.imagenet_source == backbones.KERAS_APPLICATIONS:
        cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
        return [f for f in glob.glob(os.path.join(cache, "*.h5"))
                if backbone.imagenet_cache_name in os.path.basename(f) and "top" in os.path.basename(f)]
    cache = os.environ.get("KAGGLEHUB_CACHE", os.path.expanduser("~/.cache/kagglehub"))
    return glob.glob(os.path.join(cache, "models", "keras", "*", "keras", backbone.imagenet_cache_name, "*"))


def _reachable(host: str) -> bool:
    """Whether `host`:443 accepts a connection. PRETRAINED_PROBE_ADDRESS=host:port probes that address instead
    (the tests point it at a closed local port, so the offline path is tested on any machine)."""
    override = os.environ.get(PROBE_ADDRESS_VARIABLE, "")
    address = (override.rpartition(":")[0], int(override.rpartition(":")[2])) if override else (host, 443)
    try:
        socket.create_connection(address, timeout=PROBE_SECONDS).close()
        return True
    except OSError:
        return False


def check_imagenet_available(model_type: str) -> None:
    """Raises a one-line UserInputError when the ImageNet weights are neither cached nor downloadable."""
    backbone = backbones.spec(model_type)
    if backbone.imagenet_source is None:
        those = ", ".join(s.name for s in backbones.BACKBONES.values()
                          if s.family == backbone.family and s.imagenet_source)
        raise UserInputError(f"--pretrained_weights=imagenet: {backbones.KERAS_HUB} has no ImageNet preset for "
                             f"--model_type={model_type}; use one of {those}, or give a weights file or checkpoint")
    if _cached_imagenet_files(backbone):
        return
    source = backbone.imagenet_source
    if not _reachable(DOWNLOAD_HOSTS[source]):
        raise UserInputError(
            f"--pretrained_weights=imagenet: the {source} ImageNet weights of {model_type} are not cached and "
            f"{DOWNLOAD_HOSTS[source]} cannot be reached from this machine. Bake them into the image "
            f"(make image PRETRAINED={model_type}), mount a cache (KERAS_HOME / KAGGLEHUB_CACHE), or pass a "
            f"local .weights.h5 file or checkpoint with --pretrained_weights=PATH")


def _local_copy(path: str, directory: bool = False) -> str:
    """gs:// inputs are copied to a temporary local path (Keras and KerasHub read local files)."""
    if "://" not in path:
        return path
    target = tempfile.mkdtemp(prefix="pretrained-")
    if directory:
        for name in tf.io.gfile.listdir(path):
            tf.io.gfile.copy(f"{path.rstrip('/')}/{name}", os.path.join(target, name.rstrip("/")), overwrite=True)
        return target
    local = os.path.join(target, os.path.basename(path))
    tf.io.gfile.copy(path, local, overwrite=True)
    return local


def _keras_hub_encoder(backbone: keras.Model):
    found = [layer for layer in backbone.layers if isinstance(layer, keras_hub.models.Backbone)]
    return found[0] if found else None


def load_weights_file(backbone: keras.Model, path: str, model_type: str) -> None:
    try:
        backbone.load_weights(_local_copy(path))
    except (ValueError, KeyError) as error:
        raise UserInputError(f"--pretrained_weights={path} does not fit --model_type={model_type} "
                             f"({backbone.name}): {str(error).splitlines()[0][:300]}") from None


def load_keras_hub_preset(backbone: keras.Model, path: str, model_type: str) -> None:
    loaded = keras_hub.models.Backbone.from_preset(_local_copy(path, directory=True))
    described = f"{type(loaded).__name__} '{loaded.name}'"
    encoder = _keras_hub_encoder(backbone)
    if encoder is None or type(encoder) is not type(loaded):
        raise UserInputError(f"--pretrained_weights={path} holds a KerasHub {described}; --model_type={model_type} "
                             f"is built as {type(encoder).__name__ if encoder else 'a keras.applications network'}")
    ours, theirs = encoder.get_weights(), loaded.get_weights()
    if [w.shape for w in ours] != [w.shape for w in theirs]:
        raise UserInputError(f"--pretrained_weights={path} holds a KerasHub {described} with {len(theirs)} weight "
                             f"arrays that do not match --model_type={model_type} ({len(ours)} arrays)")
    encoder.set_weights(theirs)


def load_imagenet(backbone: keras.Model, model_type: str, image_size: int) -> None:
    check_imagenet_available(model_type)
    source = backbones.build_feature_extractor(model_type, image_size, weights="imagenet")
    backbone.set_weights(source.get_weights())


def describe(path: str) -> str:
    """'imagenet', 'weights_file', 'keras_hub_preset' or 'checkpoint'."""
    if path == "imagenet":
        return "imagenet"
    if path.endswith(".weights.h5") or path.endswith(".h5"):
        return "weights_file"
    if tf.io.gfile.exists(f"{path.rstrip('/')}/config.json"):
        return "keras_hub_preset"
    return "checkpoint"


def log_loaded(kind: str, path: str, model_type: str) -> None:
    logging.info("pretrained backbone for %s from %s (%s)", model_type, path, kind.replace("_", " "))


def download(model_types: list[str]) -> None:
    """Fills the Keras / KerasHub caches with these backbones' ImageNet weights (the image build's step)."""
    for model_type in model_types:
        check_imagenet_available(model_type)
        backbones.build_feature_extractor(model_type, backbones.spec(model_type).native_size, weights="imagenet")
        print(f"cached ImageNet weights for {model_type}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Download ImageNet backbones into the local caches.")
    parser.add_argument("--download", required=True, help="Comma-separated model types, e.g. efficientnet-b0,resnet-50")
    try:
        download([m.strip() for m in parser.parse_args().download.split(",") if m.strip()])
    except UserInputError as error:
        raise SystemExit(f"error: {error}") from None
