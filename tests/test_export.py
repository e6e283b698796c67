"""export/: the serving signatures on a small real Keras model, and the atomic export, including a job that
dies in the middle of replacing its model."""

import gc
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from algorithms.classification.serving import ClassificationServing
from algorithms.detection.serving import DetectionServing
from data.sample_data import digit_images, encode
from dataloaders import image_ops
from export import atomic

SIZE = 16


def _classifier(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(inputs / 255.0))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(features), name=f"tiny_{seed}")


def _digit_png() -> bytes:
    images, _ = digit_images(24)
    return encode(images[0], "PNG")


def test_classification_signature_serves_the_models_softmax_on_the_training_preprocessing(tmp_path):
    model = _classifier(1)
    module = ClassificationServing(model, SIZE, ["zero", "one", "two"])
    atomic.export_saved_model(module, str(tmp_path / "model"), {"global_step": 3})
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    assert set(loaded.signatures) == {"serving_default", "classify", "class_names"}
    serve = loaded.signatures["serving_default"]
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in serve.structured_input_signature[1].items()} == {
        "image_bytes": (tf.string, [None]), "key": (tf.string, [None])}
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in serve.structured_outputs.items()} == {
        "classes": (tf.int64, [None]), "probabilities": (tf.float32, [None, 3]), "key": (tf.string, [None])}
    encoded = _digit_png()
    outputs = serve(image_bytes=tf.constant([encoded, encoded]), key=tf.constant([b"a", b"b"]))
    expected = tf.nn.softmax(model(image_ops.preprocess_for_eval(tf.constant(encoded), SIZE)[None])).numpy()[0]
    np.testing.assert_allclose(outputs["probabilities"].numpy()[0], expected, rtol=1e-5, atol=1e-6)
    assert outputs["classes"].numpy().tolist() == [int(expected.argmax())] * 2
    assert outputs["key"].numpy().tolist() == [b"a", b"b"]
    assert loaded.signatures["class_names"]()["class_names"].numpy().tolist() == [b"zero", b"one", b"two"]
    assert (tmp_path / "model" / "assets" / "labels.txt").read_text() == "zero\none\ntwo\n"
    # The asset's source file goes with the module (an export per evaluation once left a folder each in TMPDIR).
    source_folder = os.path.dirname(module.labels_asset.asset_path.numpy().decode())
    assert os.path.exists(source_folder)
    del module
    gc.collect()
    assert not os.path.exists(source_folder)


def test_detection_signature_echoes_keys_and_counts_as_float(tmp_path):
    model = _classifier(2)

    def detect(images, scaled_sizes):
        # The signature's own part: whatever the task's post-processing returns, shaped and typed as documented.
        batch = tf.shape(images)[0]
        boxes = tf.tile(tf.concat([scaled_sizes / 100.0, scaled_sizes / 50.0], -1)[:, None, :], [1, 5, 1])
        return {"boxes": boxes, "scores": tf.ones([batch, 5]) * 0.5, "classes": tf.ones([batch, 5]),
                "num_detections": tf.fill([batch], 5)}

    module = DetectionServing(model, detect, (SIZE, SIZE), (32, 32))
    atomic.export_saved_model(module, str(tmp_path / "model"), {})
    serve = tf.saved_model.load(str(tmp_path / "model")).signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"encoded_image", "key"}
    outputs = serve(encoded_image=tf.constant([_digit_png()]), key=tf.constant([b"k"]))
    assert outputs["num_detections"].dtype == tf.float32 and outputs["num_detections"].numpy().tolist() == [5.0]
    assert outputs["detection_boxes"].shape == (1, 5, 4) and outputs["key"].numpy().tolist() == [b"k"]
    # A 24 px image fitted into 16 px: the detect function saw the scaled size (16, 16).
    np.testing.assert_allclose(outputs["detection_boxes"].numpy()[0, 0], [0.16, 0.16, 0.32, 0.32], atol=1e-6)


def _export(model_seed: int, target: str, step: int) -> None:
    atomic.export_saved_model(ClassificationServing(_classifier(model_seed), SIZE), target, {"global_step": step},
                              {"labels.txt": f"exported at {step}\n"})


def _served_step(target: str) -> str:
    assert tf.io.gfile.exists(f"{target}/saved_model.pb") and tf.io.gfile.exists(f"{target}/deployment_config.yaml")
    tf.saved_model.load(target)  # loads: a complete model
    with open(f"{target}/deployment_config.yaml") as handle:
        return yaml.safe_load(handle)["labels"]["global_step"]


def _leftovers(target: str) -> list[str]:
    parent, name = os.path.split(target)
    return sorted(entry for entry in os.listdir(parent) if entry.startswith(f".{name}."))


def test_a_new_export_replaces_the_old_one_and_leaves_nothing_beside_it(tmp_path):
    target = str(tmp_path / "model")
    _export(1, target, 10)
    _export(2, target, 20)
    assert _served_step(target) == "20" and (tmp_path / "model" / "labels.txt").read_text() == "exported at 20\n"
    assert _leftovers(target) == []


class _Crash(Exception):
    pass


@pytest.mark.parametrize("renames_before_crash, expected_step", [
    (0, "10"),  # killed before the swap began: the old model stays, the unfinished one is dropped
    (1, "20"),  # killed after the old model moved aside, before the new one moved in: the new one is complete
])
def test_a_job_killed_mid_swap_leaves_a_complete_model_after_recovery(tmp_path, monkeypatch, renames_before_crash,
                                                                       expected_step):
    target = str(tmp_path / "model")
    _export(1, target, 10)
    real_rename, calls = tf.io.gfile.rename, []

    def dying_rename(source, destination, overwrite=False):
        if len(calls) == renames_before_crash:
            raise _Crash(f"killed before renaming {source}")
        calls.append(source)
        return real_rename(source, destination, overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", dying_rename)
    with pytest.raises(_Crash):
        _export(2, target, 20)
    monkeypatch.setattr(tf.io.gfile, "rename", real_rename)
    assert _leftovers(target), "the crash left the swap half done"
    atomic.recover_interrupted_swap(target)  # what the next run of the job does first
    assert _served_step(target) == expected_step
    assert _leftovers(target) == []


def test_a_half_written_incoming_model_is_never_restored(tmp_path):
    target = str(tmp_path / "model")
    _export(1, target, 10)
    incoming = tmp_path / ".model.incoming"
    incoming.mkdir()
    (incoming / "saved_model.pb").write_bytes(b"half")  # no deployment_config.yaml: the export never finished
    os.rename(target, tmp_path / ".model.previous")
    atomic.recover_interrupted_swap(target)
    assert _served_step(target) == "10" and _leftovers(target) == []
