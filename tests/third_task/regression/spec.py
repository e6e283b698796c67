"""A third task, for tests/test_third_task.py: one number per image (here the value of a digit scan), learned by
one dense layer. It lives here, not in algorithms/: the test installs this folder into a copy of the product as
algorithms/regression/ and adds its line to algorithms/registry.py, nothing else, to show that a task is a folder
plus a registry line."""

import dataclasses

from absl import flags

from algorithms.runtime.flags import POSITIVE
from algorithms.runtime.task_spec import TaskSpec
from core.errors import UserInputError
from core.json_values import json_number

TARGET_KEY = "image/target/value"


@dataclasses.dataclass(frozen=True)
class RegressionParams:
    image_size: int
    target_scale: float


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_float("target_scale", 1.0, "Regression: the model predicts target / target_scale.", flag_values=fv)


def read_params(fv: flags.FlagValues) -> RegressionParams:
    try:
        size = int(fv.image_size or 16)
    except ValueError:
        raise UserInputError(f"--image_size={fv.image_size!r} must be one number of pixels") from None
    return RegressionParams(image_size=size, target_scale=fv.target_scale)


def _make_task(config):
    from algorithms.regression.task import RegressionTask

    return RegressionTask(config)


def format_prediction(row: dict, name, options: dict) -> list:
    return [{"value": json_number(row["value"])}]


SPEC = TaskSpec(
    name="regression", title="image regression", metric="mean_absolute_error", maximize=False,
    label_keys=frozenset({TARGET_KEY}), records=f"regression records ({TARGET_KEY})",
    define_flags=define_flags, read_params=read_params, make_task=_make_task,
    serving_outputs=frozenset({"value", "key"}), serving_image_input="image_bytes",
    format_prediction=format_prediction, only_flags=frozenset({"target_scale"}), uses_classes=False,
    flag_ranges={"target_scale": POSITIVE})
