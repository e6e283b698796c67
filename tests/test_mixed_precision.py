"""Mixed precision: the policy choice per device, and real training + a float32 export under each policy."""

import logging

import pytest
import tensorflow as tf

from algorithms.runtime.precision import choose_policy
from core.errors import UserInputError
from tests.conftest import FAST_FLAGS


def test_policy_choice_per_device():
    assert choose_policy("auto", on_tpu=False, gpu_capabilities=[(8, 0)]) == "mixed_float16"  # A100
    assert choose_policy("auto", on_tpu=False, gpu_capabilities=[(9, 0), (9, 0)]) == "mixed_float16"  # H100s
    assert choose_policy("auto", on_tpu=False, gpu_capabilities=[(6, 0)]) == "float32"  # P100: no tensor cores
    assert choose_policy("auto", on_tpu=True, gpu_capabilities=[]) == "mixed_bfloat16"
    assert choose_policy("auto", on_tpu=False, gpu_capabilities=[]) == "float32"  # CPU
    assert choose_policy("false", on_tpu=True, gpu_capabilities=[(8, 0)]) == "float32"
    assert choose_policy("true", on_tpu=False, gpu_capabilities=[(6, 0)]) == "mixed_float16"
    assert choose_policy("true", on_tpu=False, gpu_capabilities=[]) == "mixed_bfloat16"
    with pytest.raises(UserInputError, match="--mixed_precision='half'"):
        choose_policy("half", on_tpu=False, gpu_capabilities=[])


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_training_under_mixed_precision_exports_a_float32_model(digits, tmp_path, monkeypatch, caplog, precision):
    import keras

    from algorithms import registry

    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "m"))
    args = [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            f"--job_dir={tmp_path / 'job'}", "--num_classes=10", "--max_steps=3", "--train_steps_per_eval=3",
            f"--mixed_precision={precision}", *FAST_FLAGS]
    absl_logger = logging.getLogger("absl")  # absl may stop propagating to the root logger after a first job
    absl_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO"), caplog.at_level("INFO", logger="absl"):
            summary = registry.run_job(registry.parse_job_config(args))
    finally:
        absl_logger.removeHandler(caplog.handler)
    assert f"precision: mixed_{precision}" in caplog.text
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the job
    assert all(loss == loss for _, loss in summary.losses)  # finite (NaN != NaN)
    model_dir = tmp_path / "job" / "model"
    stored = tf.train.load_checkpoint(str(model_dir / "variables" / "variables")).get_variable_to_dtype_map()
    dtypes = {dtype for name, dtype in stored.items() if name.startswith("model/")}
    assert dtypes == {tf.float32}, dtypes  # the serving model is float32 whatever the training precision
    loaded = tf.saved_model.load(str(model_dir))
    assert loaded.signatures["serving_default"].structured_outputs["probabilities"].dtype == tf.float32
