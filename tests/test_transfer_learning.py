"""Transfer learning as the SageMaker / Keras tutorials teach it, offline: a ResNet-18 trained here on one real
task (which digit) is the "pretrained" backbone, saved in every supported format, then fine-tuned on another
real task (odd or even) with the backbone frozen, unfrozen, or frozen then unfrozen."""

import os

import numpy as np
import pytest
import tensorflow as tf

from algorithms.classification.model import MODEL_TYPES, ImageClassifier
from algorithms.runtime.checkpoints import resolve_checkpoint_prefix, restore_matching
from dataloaders import tfrecord_files
from tests.conftest import FAST_FLAGS, refusing_address, run_entrypoint


@pytest.fixture(scope="module")
def parity(digits, tmp_path_factory):
    """The same real digit scans relabelled: 1 = even, 2 = odd (another task for the same pixels)."""
    root = tmp_path_factory.mktemp("parity")
    paths = {}
    for split in ("train", "validation"):
        path = str(root / f"{split}-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            for source in tfrecord_files.resolve_files(digits[split], split):
                for record in tfrecord_files.read_records(source, 100000):
                    example = tf.train.Example.FromString(record)
                    label = example.features.feature["image/class/label"].int64_list.value
                    label[0] = (label[0] - 1) % 2 + 1
                    writer.write(example.SerializeToString())
        paths[split] = path
    return paths


def _variables_by_path(model_dir: str) -> dict:
    """The exported model's variables, keyed by Keras path (how trackable_variables stores them)."""
    return _checkpoint_variables(os.path.join(model_dir, "variables", "variables"))


def _checkpoint_variables(prefix: str) -> dict:
    """The model variables of a checkpoint (a SavedModel's variables are one too), keyed by Keras path."""
    reader = tf.train.load_checkpoint(prefix)
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    return {key[len("model/"):-len(suffix)].replace(".S", "/").replace("..", "."): reader.get_tensor(key)
            for key in reader.get_variable_to_shape_map() if key.startswith("model/") and key.endswith(suffix)}


@pytest.fixture(scope="module")
def pretrained_sources(trained_job, tmp_path_factory):
    """The digit classifier's backbone as a job dir, a .weights.h5 file and a KerasHub preset dir. All three hold
    the weights a job dir resolves to, its newest checkpoint: the exported best model may be an earlier step."""
    root = tmp_path_factory.mktemp("pretrained")
    model = ImageClassifier("resnet-18", 32, 10, name="image_classifier")  # the trainer's name: same paths
    restored, missing = restore_matching(model.variables, resolve_checkpoint_prefix(trained_job["job_dir"]))
    assert not missing, missing
    weights_file = str(root / "digits_backbone.weights.h5")
    model.backbone.save_weights(weights_file)
    preset_dir = str(root / "digits_preset")
    encoder = [layer for layer in model.backbone.layers if hasattr(layer, "save_to_preset")][0]
    encoder.save_to_preset(preset_dir)
    backbone = {v.path: v.numpy() for v in model.backbone.variables}
    return {"job_dir": trained_job["job_dir"], "weights_file": weights_file, "preset_dir": preset_dir,
            "backbone": backbone}


def _fine_tune(parity, job_dir, *extra):
    args = [f"--training_data_path={parity['train']}", f"--validation_data_path={parity['validation']}",
            f"--job-dir={job_dir}", "--num_classes=2", "--train_steps_per_eval=60", "--log_every_steps=10", *FAST_FLAGS,
            *extra]
    result = run_entrypoint(args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _accuracy(result) -> float:
    return float(result.stdout.split("best top_1_accuracy=")[1].split()[0])


@pytest.mark.parametrize("source", ["job_dir", "weights_file", "preset_dir"])
def test_frozen_backbone_stays_bit_identical_and_the_new_head_learns(parity, pretrained_sources, tmp_path, source):
    job = tmp_path / "frozen"
    result = _fine_tune(parity, job, f"--pretrained_weights={pretrained_sources[source]}", "--max_steps=60",
                        "--train_only_top_layer=true", "--dropout_rate=0.1", "--regularizers_l2=0.0001")
    exported = _variables_by_path(str(job / "model"))
    backbone = pretrained_sources["backbone"]
    assert set(backbone) <= set(exported)
    for path, value in backbone.items():
        np.testing.assert_array_equal(exported[path], value, err_msg=path)  # bit-identical, BatchNorm stats too
    assert exported["image_classifier/logits/kernel"].shape == (512, 2)
    # Chance is 0.5. Seeded (the source job and this one: --seed=1), every source gives 0.8719 on every run on a
    # machine (2-core AMD EPYC). Another CPU's last bits send training elsewhere, as another seed would: unseeded
    # runs spanned 0.618-0.8 on other machines, so the bound (0.58, 0.67x the seeded value) sits under all of that.
    print(f"SEEDED OUTCOME frozen {source} {_accuracy(result)}")
    assert _accuracy(result) > 0.58, "a linear head on digit features tells odd from even above chance"
    assert "training the head only (backbone frozen)" in result.stderr


def test_unfrozen_backbone_changes(parity, pretrained_sources, tmp_path):
    job = tmp_path / "unfrozen"
    _fine_tune(parity, job, f"--pretrained_weights={pretrained_sources['weights_file']}", "--max_steps=20",
               "--train_only_top_layer=false")
    exported = _variables_by_path(str(job / "model"))
    changed = [p for p, v in pretrained_sources["backbone"].items() if not np.array_equal(exported[p], v)]
    assert len(changed) > len(pretrained_sources["backbone"]) // 2


def test_two_phase_schedule_switches_at_the_stated_step_across_a_restart(parity, pretrained_sources, tmp_path):
    job = tmp_path / "two_phase"
    common = [f"--pretrained_weights={pretrained_sources['job_dir']}", "--train_only_top_layer=true",
              "--fine_tune_after_steps=30", "--fine_tune_learning_rate=0.0003", "--train_steps_per_eval=20"]
    first = _fine_tune(parity, job, *common, "--max_steps=20")  # stops (as if killed) before the switch
    frozen = _variables_by_path(str(job / "model"))
    for path, value in pretrained_sources["backbone"].items():
        np.testing.assert_array_equal(frozen[path], value, err_msg=path)
    assert "training the whole network" not in first.stderr
    second = _fine_tune(parity, job, *common, "--max_steps=50")
    assert "resumed from" in second.stderr and "at step 20" in second.stderr
    assert "step 20: training the head only (backbone frozen)" in second.stderr
    assert "step 30: training the whole network at learning rate 0.0003" in second.stderr
    learning_rates = {int(line.split("step ")[1].split("/")[0]): float(line.split("lr=")[1].split()[0])
                      for line in second.stderr.splitlines() if " lr=" in line and "step " in line}
    assert all(abs(lr - 0.0003) < 1e-9 for step, lr in learning_rates.items() if step > 30), learning_rates
    assert any(abs(lr - 0.0003) > 1e-6 for step, lr in learning_rates.items() if step <= 30), learning_rates
    # The checkpoint of step 50, not the exported best model: whether 20 fine-tuning steps beat the frozen
    # model's accuracy varies run to run (the training input order is not deterministic).
    tuned = _checkpoint_variables(str(job / "checkpoints" / "ckpt-50"))
    assert any(not np.array_equal(tuned[p], v) for p, v in pretrained_sources["backbone"].items())
    serve = tf.saved_model.load(str(job / "model")).signatures["serving_default"]
    assert set(serve.structured_outputs) == {"classes", "probabilities", "key"}


def test_imagenet_offline_fails_fast_with_what_to_do(parity, tmp_path):
    result = run_entrypoint([f"--training_data_path={parity['train']}", f"--validation_data_path={parity['validation']}",
                             f"--job-dir={tmp_path / 'job'}", "--num_classes=2", "--max_steps=5",
                             "--model_type=mobilenet-v2", "--pretrained_weights=imagenet"],
                            {"KERAS_HOME": str(tmp_path / "empty_keras_home"),
                             "PRETRAINED_PROBE_ADDRESS": refusing_address()}, timeout=60)
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")][0]
    assert "storage.googleapis.com cannot be reached" in error and "make image PRETRAINED=mobilenet-v2" in error
    assert not os.path.exists(tmp_path / "job" / "model")


def test_mismatched_architectures_name_both(parity, pretrained_sources, tmp_path):
    common = [f"--training_data_path={parity['train']}", f"--validation_data_path={parity['validation']}",
              "--num_classes=2", "--max_steps=2", "--image_size=32"]
    for source, model_type, expected in (
            ("weights_file", "resnet-34", "does not fit --model_type=resnet-34"),
            ("preset_dir", "efficientnet-b0", "holds a KerasHub ResNetBackbone"),
            ("preset_dir", "resnet-50", "do not match --model_type=resnet-50")):
        result = run_entrypoint([*common, f"--job-dir={tmp_path / source / model_type}", f"--model_type={model_type}",
                                 f"--pretrained_weights={pretrained_sources[source]}"])
        assert result.returncode == 2, result.stderr[-2000:]
        error = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")][0]
        assert expected in error and pretrained_sources[source] in error, error


@pytest.mark.parametrize("model_type", [m for m in MODEL_TYPES if m.startswith(("mobilenet", "efficientnetv2"))])
def test_transfer_backbones_build_without_downloads(model_type):
    model = ImageClassifier(model_type, 64, 3)
    logits = model(tf.random.uniform([2, 64, 64, 3], 0, 255), training=False)
    assert logits.shape == (2, 3) and np.isfinite(logits.numpy()).all()
