"""What the shared code may know of a task: its TaskSpec, declared in the task's own folder (`spec.py`) and listed
once in algorithms/registry.py. Routing, the flags, hypertune, `tune`, early stopping, the best model, the
report, export and `predict` read the task's name, records, flags, metric and prediction format from here, so
adding a task is a folder plus one registry line (README, "Add a task").

A spec module stays light (no TensorFlow at import): the registry imports every spec for `--help` and routing,
and a task's model code only when a job of that task runs (`make_task`).
"""

import dataclasses
from typing import Callable, Mapping

from algorithms.runtime.config import TrainingDefaults


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str  # --task value and JobConfig.task
    title: str  # in messages: "image classification"
    # Its metric: reported to hypertune (the tag), compared for the best model and early stopping, `tune`'s
    # objective, the report's headline; `maximize` is its goal.
    metric: str
    maximize: bool
    # Routing: training data whose examples carry any of these keys is this task's (class folders carry
    # image/class/label: dataloaders/sources.py). `records` says what its records hold, for error messages.
    label_keys: frozenset
    records: str
    define_flags: Callable  # (FlagValues) -> None: the task's own flags
    read_params: Callable  # (FlagValues) -> the task's frozen params (JobConfig.task_params); UserInputError
    make_task: Callable  # (JobConfig) -> algorithms.runtime.task.Task; imports the task's model code
    # The output names of its `serving_default` signature: how `predict` recognises a model of this task.
    serving_outputs: frozenset
    serving_image_input: str  # the signature's encoded-image input name
    # (one serving_default output row as numpy, name(1-based label) -> str, predict's options) -> JSON-ready list
    format_prediction: Callable
    defaults: TrainingDefaults = TrainingDefaults()
    # Flags no other task has: they route a job to this task when its data cannot say, and are refused on
    # another task's data (a silent switch of model would train something else than asked).
    only_flags: frozenset = frozenset()
    uses_classes: bool = True  # --num_classes (and labels.txt) mean something to it; required then
    # {own numeric flag: runtime.flags.Range}, checked with the shared flags' ranges before its params are read.
    flag_ranges: Mapping = dataclasses.field(default_factory=dict)
    # {shared flag: what it means for this task}, appended to the shared flag's help.
    flag_notes: Mapping[str, str] = dataclasses.field(default_factory=dict)
