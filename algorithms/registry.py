"""Flags -> config -> which algorithm: the one list of tasks, the parsing of the whole command line, and routing.

A task is its folder plus one line in TASK_MODULES (README, "Add a task"): its spec (algorithms/runtime/
task_spec.py) says what the shared code may know of it. A job's task is --task when given, else the first whose
label keys the training data carries (class folders carry image/class/label), else the one whose own flags were
given, else DEFAULT_TASK. A flag of another task than the chosen one is an error, never a silent switch of model.
"""

import dataclasses
import importlib
import math

from absl import flags, logging

from algorithms.runtime import flags as shared_flags
from algorithms.runtime.config import JobConfig
from algorithms.runtime.placement import Placement
from algorithms.runtime.task_spec import TaskSpec
from core.errors import UserInputError, nearest
from platforms import google_cloud, resnet_main

# Each task's spec module (its SPEC), one line per task, in routing order: a record holding the labels of several
# tasks (boxes and an image-level class) trains the first.
TASK_MODULES = (
    "algorithms.detection.spec",
    "algorithms.classification.spec",
)
TASKS: tuple[TaskSpec, ...] = tuple(importlib.import_module(name).SPEC for name in TASK_MODULES)
TASK_SPECS = {spec.name: spec for spec in TASKS}
DEFAULT_TASK = "classification"  # when neither the data nor the flags say


def new_flag_values() -> flags.FlagValues:
    fv = flags.FlagValues()
    shared_flags.define_shared_flags(fv, TASKS)
    resnet_main.define_flags(fv)
    for spec in TASKS:
        spec.define_flags(fv)
    return fv


def normalize_argv(argv: list[str]) -> list[str]:
    """`--job-dir` (gcloud's spelling) is the same flag as `--job_dir`; quotes around a value are not part of it."""
    argv = ["--job_dir" + arg[len("--job-dir"):] if arg.startswith("--job-dir") else arg for arg in argv]
    return shared_flags.strip_quotes(argv)


def _flag_names(args: list[str]) -> set[str]:
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in args if arg.startswith("--")}


def _task_of_data(data, flag_task, flag) -> tuple:
    """(task name, why) from what the training data holds."""
    for spec in TASKS:
        found = sorted(data.label_keys & spec.label_keys)
        if found:
            return spec.name, data.where(found[0])
    if flag_task is not None:  # no task's labels: the flags say what was meant, the task's check names what is missing
        return flag_task.name, f"{flag_task.name}-only flag --{flag}"
    return DEFAULT_TASK, f"no task's labels in {data.path}"


def choose_task(explicit: str | None, given_flags: set[str],
                training_data_path: str | None) -> tuple:
    """(task, why, the training data when it was looked at): --task, else the training data (class folders, or
    the first record's keys), else a task's own flags, else DEFAULT_TASK. Another task's own flag is refused."""
    own_flags = [(spec, sorted(given_flags & spec.only_flags)) for spec in TASKS]
    flag_task, flag = next(((spec, own[0]) for spec, own in own_flags if own), (None, None))
    data = None
    if explicit:
        task, why = explicit, "--task"
    elif training_data_path:
        from dataloaders.sources import inspect_training_data  # TensorFlow: only when the data must be read

        data = inspect_training_data(training_data_path)
        task, why = _task_of_data(data, flag_task, flag)
    elif flag_task is not None:
        task, why = flag_task.name, f"{flag_task.name}-only flag --{flag}"
    else:
        task, why = DEFAULT_TASK, "default"
    for other, own in own_flags:
        if other.name != task and own:
            raise UserInputError(f"--{own[0]} is a flag of {other.title}, but this job is {TASK_SPECS[task].title} "
                                 f"({why}); remove it, or train on {other.records}")
    return task, why, data


def task_of_signature(output_names) -> TaskSpec:
    """The task whose serving_default returns these outputs (how `predict` knows what a model is)."""
    for spec in TASKS:
        if spec.serving_outputs == set(output_names):
            return spec
    known = "; ".join(f"{spec.name}: {', '.join(sorted(spec.serving_outputs))}" for spec in TASKS)
    raise UserInputError(f"a serving_default with outputs {', '.join(sorted(output_names))} is no model of this "
                         f"trainer ({known})")


def _classifier_from_resnet_depth(fv: flags.FlagValues, given: set[str]) -> None:
    """--resnet_depth on classification data (resnet_main's command line) asks for a ResNet classifier."""
    from algorithms import backbones

    wanted = f"resnet-{fv.resnet_depth}"
    if fv.resnet_depth not in backbones.resnet_depths():
        depths = ", ".join(map(str, backbones.resnet_depths()))
        raise UserInputError(f"--resnet_depth={fv.resnet_depth}: the ResNet classifiers have depths {depths}")
    if "model_type" in given and fv.model_type.strip().lower() != wanted:
        raise UserInputError(f"--resnet_depth={fv.resnet_depth} asks for a {wanted} classifier but "
                             f"--model_type={fv.model_type}; give one of them")
    fv.model_type = wanted


def _resolve_sizes(fv: flags.FlagValues, given: set[str], data) -> None:
    """--num_classes from class folders when not given; --max_steps from --epochs (images: --num_train_images,
    else the class folders' training share, else the records of the training files)."""
    if fv.epochs is not None:
        if "max_steps" in given:
            raise UserInputError(f"--epochs={fv.epochs} and --max_steps={fv.max_steps} both set the training "
                                 "length; give one of them")
        if not fv.epochs > 0:
            raise UserInputError(f"--epochs={fv.epochs} must be > 0")
        if fv.train_batch_size < 1:
            raise UserInputError(f"--train_batch_size={fv.train_batch_size} must be at least 1")
    count_images = fv.epochs is not None and fv.num_train_images is None
    split = 0.0 if fv.validation_data_path else fv.validation_split_ratio
    if data is not None and fv.num_classes is None:
        names = data.class_names(split, fv.seed or 0)
        if names:
            fv.num_classes = len(names)
            logging.info("--num_classes=%d: the class folders of %s (%s)", len(names), data.path, ", ".join(names))
    if fv.epochs is None:
        return
    if not count_images:
        images, source = fv.num_train_images, "--num_train_images"
    elif data is not None:
        images, source = data.count_training_images(split, fv.seed or 0), f"counted in {data.path}"
    else:
        raise UserInputError("--epochs needs the training data to count its images: give --training_data_path")
    if images < 1:
        raise UserInputError(f"--epochs: {source} gives {images} training images")
    fv.max_steps = math.ceil(fv.epochs * images / fv.train_batch_size)
    logging.info("--epochs=%g: %d training images (%s) / batch %d -> --max_steps=%d", fv.epochs, images, source,
                 fv.train_batch_size, fv.max_steps)


def _refuse_unknown(leftover: list[str], fv: flags.FlagValues) -> None:
    """A misspelled flag would otherwise leave its default in place and train another job than the one asked for."""
    if not leftover:
        return
    arg = leftover[0]
    if not arg.startswith("-"):
        raise UserInputError(f"unexpected argument {arg!r}: every setting is a flag, --name=value "
                             "(`entrypoint.py --help` lists them)")
    name = arg.lstrip("-").split("=", 1)[0]
    known = {f"--{flag}" for flag in fv}
    raise UserInputError(f"unknown flag --{name}{nearest(f'--{name}', known)}; `entrypoint.py --help` lists the flags")


def parse_job_config(argv: list[str], placement: Placement | None = None) -> JobConfig:
    """argv (without the program name) -> JobConfig; raises UserInputError for any bad value. `placement` is
    what the platform says of this process (platforms.job_from); None: what its variables say (a job started by
    hand sets none: one process, no trial)."""
    argv = normalize_argv(list(argv))
    fv = new_flag_values()
    try:
        leftover = fv(["entrypoint.py", *argv], known_only=True)[1:]
    except flags.Error as error:
        raise UserInputError(str(error)) from None
    _refuse_unknown(leftover, fv)
    given = resnet_main.apply(fv, _flag_names(argv))
    shared_flags.check_finite_numbers(fv)
    task, why, training_data = choose_task(fv.task, given, fv.training_data_path)
    logging.info("task: %s (chosen by %s)", task, why)
    if task == "classification" and "resnet_depth" in given:
        _classifier_from_resnet_depth(fv, given)
    if training_data is None and fv.training_data_path and (fv.epochs is not None or fv.num_classes is None):
        from dataloaders.sources import inspect_training_data

        training_data = inspect_training_data(fv.training_data_path)
    _resolve_sizes(fv, given, training_data)
    spec = TASK_SPECS[task]
    shared_flags.check_ranges(fv, {**shared_flags.SHARED_RANGES, **spec.flag_ranges})
    config = shared_flags.read_job_config(fv, spec, spec.read_params(fv))
    return dataclasses.replace(config, training_data=training_data, export_dir=fv.export_dir or None,
                               placement=placement or google_cloud.placement())


def run_job(config: JobConfig):
    from algorithms.runtime.trainer import train
    from platforms import hypertune

    spec = TASK_SPECS[config.task]
    return train(spec.make_task(config), config, callbacks=(hypertune.HypertuneCallback(),))


def help_text() -> str:
    return new_flag_values().get_help(include_special_flags=False)
