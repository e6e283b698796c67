"""Flags -> config -> which algorithm: parsing of the whole command line and the routing.

A job is detection when --task says so, or when the training data holds detection records (the first
record carries image/object/class/label); class folders and image/class/label records are classification.
Only when the data cannot be looked at do detection-only flags decide. A detection-only flag on
classification data is an error, never a silent switch of model.
"""

import dataclasses
import math

from absl import flags, logging

from algorithms.classification import flags as classification_flags
from algorithms.detection import flags as detection_flags
from algorithms.runtime import flags as shared_flags
from algorithms.runtime.config import JobConfig, TrainingDefaults
from algorithms.runtime.placement import Placement
from core import feature_keys
from core.errors import UserInputError, nearest
from platforms import google_cloud, resnet_main

DETECTION_ONLY_FLAGS = detection_flags.DETECTION_ONLY_FLAGS


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    define_flags: callable
    read_params: callable
    make_task: callable
    defaults: TrainingDefaults = TrainingDefaults()


def _make_classification_task(config):
    from algorithms.classification.task import ClassificationTask

    return ClassificationTask(config)


def _make_detection_task(config):
    from algorithms.detection.task import DetectionTask

    return DetectionTask(config)


TASK_SPECS = {
    "classification": TaskSpec(classification_flags.define_flags, classification_flags.read_params,
                               _make_classification_task),
    "detection": TaskSpec(detection_flags.define_flags, detection_flags.read_params, _make_detection_task,
                          detection_flags.TRAINING_DEFAULTS),
}


def new_flag_values() -> flags.FlagValues:
    fv = flags.FlagValues()
    shared_flags.define_shared_flags(fv)
    resnet_main.define_flags(fv)
    for spec in TASK_SPECS.values():
        spec.define_flags(fv)
    return fv


def normalize_argv(argv: list[str]) -> list[str]:
    """`--job-dir` (gcloud's spelling) is the same flag as `--job_dir`; quotes around a value are not part of it."""
    argv = ["--job_dir" + arg[len("--job-dir"):] if arg.startswith("--job-dir") else arg for arg in argv]
    return shared_flags.strip_quotes(argv)


def _flag_names(args: list[str]) -> set[str]:
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in args if arg.startswith("--")}


def choose_task(explicit: str | None, given_flags: set[str],
                training_data_path: str | None) -> tuple:
    """(task, why, the training data when it was looked at): --task, else the training data (class folders, or
    the first record's keys), else detection-only flags. A detection-only flag given for classification data
    is refused."""
    detection_flags = sorted(given_flags & DETECTION_ONLY_FLAGS)
    if explicit:
        task, why, data = explicit, "--task", None
    elif training_data_path:
        from dataloaders.sources import inspect_training_data  # TensorFlow: only when the data must be read

        data = inspect_training_data(training_data_path)
        if data.class_folders:
            task, why = "classification", f"class folders in {training_data_path}"
        elif feature_keys.OBJECT_LABEL in data.first_record_keys:
            task, why = "detection", f"{feature_keys.OBJECT_LABEL} in the first record of {data.first_record_path}"
        elif feature_keys.CLASS_LABEL in data.first_record_keys or not detection_flags:
            task, why = "classification", f"{feature_keys.CLASS_LABEL} in the first record of {data.first_record_path}"
        else:  # neither kind of label: the flags say what was meant, the task's check names what is missing
            task, why = "detection", f"detection-only flag --{detection_flags[0]}"
    elif detection_flags:
        task, why, data = "detection", f"detection-only flag --{detection_flags[0]}", None
    else:
        task, why, data = "classification", "default", None
    if task == "classification" and detection_flags:
        raise UserInputError(f"--{detection_flags[0]} is a flag of object detection, but this job is image "
                             f"classification ({why}); remove it, or train on detection records "
                             "(image/object/bbox/..., image/object/class/label)")
    return task, why, data


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
    listed = None  # the class folders, listed once for both answers
    if data is not None and data.class_folders and (fv.num_classes is None or count_images):
        from data import image_sources

        split = 0.0 if fv.validation_data_path else fv.validation_split_ratio
        listed = image_sources.read_class_folders(data.path, split, fv.seed or 0)
        if fv.num_classes is None:
            names = image_sources.derive_labels(listed)
            fv.num_classes = len(names)
            logging.info("--num_classes=%d: the class folders of %s (%s)", len(names), data.path, ", ".join(names))
    if fv.epochs is None:
        return
    if not count_images:
        images, source = fv.num_train_images, "--num_train_images"
    elif listed is not None:
        images, source = sum(item.split == "train" for item in listed), f"counted in {data.path}"
    elif data is not None:
        from dataloaders import tfrecord_files

        images = tfrecord_files.count_all_records(list(data.files), "training_data_path")
        source = f"counted in {data.path}"
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
    config = shared_flags.read_job_config(fv, task, spec.read_params(fv), spec.defaults)
    return dataclasses.replace(config, training_data=training_data, export_dir=fv.export_dir or None,
                               placement=placement or google_cloud.placement())


def run_job(config: JobConfig):
    from algorithms.runtime.trainer import train
    from platforms import hypertune

    task = TASK_SPECS[config.task].make_task(config)
    return train(task, config, evaluation_callbacks=(hypertune.evaluation_callback(task.metric_name),))


def help_text() -> str:
    return new_flag_values().get_help(include_special_flags=False)
