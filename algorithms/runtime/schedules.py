"""Learning-rate schedules: linear warm-up, then cosine, exponential, stepwise or constant."""

import dataclasses
import math

import keras
import tensorflow as tf

from algorithms.runtime.config import ScheduleConfig
from core.errors import UserInputError

DECAY_TYPES = ("cosine", "exponential", "stepwise", "constant")


def validate_schedule(config: ScheduleConfig) -> None:
    if config.decay_type not in DECAY_TYPES:
        raise UserInputError(
            f"--learning_rate_decay_type={config.decay_type!r} is not supported; use one of {', '.join(DECAY_TYPES)}")
    if config.initial_learning_rate <= 0:
        raise UserInputError(f"--initial_learning_rate={config.initial_learning_rate} must be > 0")
    if config.warmup_steps < 0 or config.warmup_learning_rate < 0:
        raise UserInputError("--warmup_steps and --warmup_learning_rate must be >= 0")
    if config.decay_type == "stepwise":
        steps, levels = config.stepwise_boundaries, config.stepwise_levels
        if not steps or len(steps) != len(levels):
            raise UserInputError(
                "--learning_rate_decay_type=stepwise needs --stepwise_learning_rate_steps and "
                "--stepwise_learning_rate_levels with the same number of values "
                f"(got {len(steps)} steps and {len(levels)} levels), e.g. --stepwise_learning_rate_steps=60000,80000 "
                "--stepwise_learning_rate_levels=0.008,0.0008")
        if list(steps) != sorted(set(steps)) or steps[0] <= 0:
            raise UserInputError(f"--stepwise_learning_rate_steps={','.join(map(str, steps))} must be positive and increasing")
    if config.decay_type in ("cosine", "exponential") and config.decay_steps <= 0:
        raise UserInputError(f"--decay_steps={config.decay_steps} must be > 0")
    if config.decay_type == "exponential" and not 0 < config.exponential_decay_rate <= 1:
        raise UserInputError("the exponential decay rate must be in (0, 1]")


class WarmupDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step): linear from warmup_learning_rate to initial_learning_rate over warmup_steps, then decays."""

    def __init__(self, config: ScheduleConfig):
        self.config = config

    def __call__(self, step):
        c = self.config
        step = tf.cast(step, tf.float32)
        peak = tf.constant(c.initial_learning_rate, tf.float32)
        after_warmup = tf.maximum(step - c.warmup_steps, 0.0)
        if c.decay_type == "cosine":
            progress = tf.minimum(after_warmup / float(c.decay_steps), 1.0)
            decayed = peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
        elif c.decay_type == "exponential":
            decayed = peak * tf.pow(c.exponential_decay_rate, after_warmup / float(c.decay_steps))
        elif c.decay_type == "stepwise":
            # Boundaries are absolute global steps, as in the upstream trainers.
            values = [c.initial_learning_rate, *c.stepwise_levels]
            decayed = tf.constant(values[0], tf.float32)
            for boundary, level in zip(c.stepwise_boundaries, c.stepwise_levels):
                decayed = tf.where(step >= float(boundary), tf.constant(level, tf.float32), decayed)
        else:
            decayed = peak
        if c.warmup_steps <= 0:
            return decayed
        warmup = c.warmup_learning_rate + (c.initial_learning_rate - c.warmup_learning_rate) * step / c.warmup_steps
        return tf.where(step < c.warmup_steps, warmup, decayed)

    def get_config(self):
        return {"config": dataclasses.asdict(self.config)}


class SwitchedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`first` before `switch_step`, then a constant `second_learning_rate` (a fine-tuning phase)."""

    def __init__(self, first, switch_step: int, second_learning_rate: float):
        self.first, self.switch_step, self.second_learning_rate = first, switch_step, second_learning_rate

    def __call__(self, step):
        return tf.where(tf.cast(step, tf.float32) < float(self.switch_step), self.first(step),
                        tf.constant(self.second_learning_rate, tf.float32))

    def get_config(self):
        return {"first": self.first.get_config(), "switch_step": self.switch_step,
                "second_learning_rate": self.second_learning_rate}
