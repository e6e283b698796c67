"""algorithms/classification/pretrained.py on its own: what a --pretrained_weights value is, and the ImageNet
check that fails in seconds, before any output, when the weights can be neither found nor downloaded."""

import socket

import pytest

from algorithms.classification import pretrained
from core.errors import UserInputError
from tests.conftest import refusing_address


def test_weights_sources_are_told_apart(tmp_path):
    (tmp_path / "preset").mkdir()
    (tmp_path / "preset" / "config.json").write_text("{}")
    assert pretrained.describe("imagenet") == "imagenet"
    assert pretrained.describe(str(tmp_path / "backbone.weights.h5")) == "weights_file"
    assert pretrained.describe(str(tmp_path / "preset")) == "keras_hub_preset"
    assert pretrained.describe(str(tmp_path / "job")) == "checkpoint"


def test_depths_without_an_imagenet_preset_are_refused_with_the_ones_that_have_one():
    with pytest.raises(UserInputError, match="no ImageNet preset for --model_type=resnet-34; use one of resnet-18, "
                                             "resnet-50, resnet-101, resnet-152"):
        pretrained.check_imagenet_available("resnet-34")


def test_cached_weights_need_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv(pretrained.PROBE_ADDRESS_VARIABLE, refusing_address())
    with pytest.raises(UserInputError, match="storage.googleapis.com cannot be reached"):
        pretrained.check_imagenet_available("efficientnet-b0")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "efficientnetb0_notop.h5").write_bytes(b"cached")
    pretrained.check_imagenet_available("efficientnet-b0")  # no probe, no error
    with pytest.raises(UserInputError, match="make image PRETRAINED=efficientnet-b1"):
        pretrained.check_imagenet_available("efficientnet-b1")  # another network's file does not count


def test_a_reachable_host_passes_the_check(tmp_path, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path))
        monkeypatch.setenv(pretrained.PROBE_ADDRESS_VARIABLE, f"127.0.0.1:{server.getsockname()[1]}")
        pretrained.check_imagenet_available("mobilenet-v2")  # not cached, but downloadable: no error


@pytest.mark.parametrize("model_type, cached", [
    # The names keras.applications and KerasHub give the files they download (their sources, Keras 3.13).
    ("efficientnet-b3", "models/efficientnetb3_notop.h5"),
    ("efficientnetv2-s", "models/efficientnetv2-s_notop.h5"),
    ("mobilenet-v2", "models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    ("mobilenet-v3-large", "models/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    ("resnet-50", "kagglehub/models/keras/resnetv1/keras/resnet_50_imagenet/2"),
])
def test_each_backbones_imagenet_cache_name_finds_the_file_its_library_writes(model_type, cached, tmp_path,
                                                                              monkeypatch):
    from algorithms import backbones

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv(pretrained.PROBE_ADDRESS_VARIABLE, refusing_address())
    path = tmp_path / cached
    path.parent.mkdir(parents=True)
    path.write_bytes(b"cached")
    pretrained.check_imagenet_available(model_type)  # found: no probe, no error
    others = [name for name, spec in backbones.BACKBONES.items()
              if spec.imagenet_source and spec.family == backbones.spec(model_type).family and name != model_type]
    with pytest.raises(UserInputError, match="cannot be reached"):
        pretrained.check_imagenet_available(others[0])  # another network's file does not count
