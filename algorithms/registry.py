"""Flags -> config -> which algorithm: parsing of the whole command line and the routing.

A job is detection when --task says so, when any detection-only flag is given (a built-in detection command
line), or when the first training record carries boxes (image/object/class/label); otherwise classification.
"""

import dataclasses

from absl import flags, logging

from algorithms.classification import flags as classification_flags
from algorithms.detection import flags as detection_flags
from algorithms.runtime import flags as shared_flags
from algorithms.runtime.config import JobConfig, TrainingDefaults
from core import feature_keys
from core.errors import UserInputError

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
    for spec in TASK_SPECS.values():
        spec.define_flags(fv)
    return fv


def normalize_argv(argv: list[str]) -> list[str]:
    """`--job-dir` (gcloud's spelling) is the same flag as `--job_dir`."""
    return ["--job_dir" + arg[len("--job-dir"):] if arg.startswith("--job-dir") else arg for arg in argv]


def _flag_names(args: list[str]) -> set[str]:
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in args if arg.startswith("--")}


def choose_task(explicit: str | None, given_flags: set[str],
                training_data_path: str | None) -> tuple:
    """(task, why, the training data when it had to be looked at): --task, else detection-only flags, else the
    training data (class folders, or the first record's keys)."""
    if explicit:
        return explicit, "--task", None
    detection_flags = sorted(given_flags & DETECTION_ONLY_FLAGS)
    if detection_flags:
        return "detection", f"detection-only flag --{detection_flags[0]}", None
    if training_data_path:
        from dataloaders.sources import inspect_training_data  # TensorFlow: only when the data must be read

        data = inspect_training_data(training_data_path)
        if data.class_folders:
            return "classification", f"class folders in {training_data_path}", data
        if feature_keys.OBJECT_LABEL in data.first_record_keys:
            return "detection", f"{feature_keys.OBJECT_LABEL} in the first record of {data.first_record_path}", data
        return "classification", f"{feature_keys.CLASS_LABEL} in the first record of {data.first_record_path}", data
    return "classification", "default", None


def parse_job_config(argv: list[str]) -> JobConfig:
    """argv (without the program name) -> JobConfig; raises UserInputError for any bad value."""
    argv = normalize_argv(list(argv))
    fv = new_flag_values()
    try:
        leftover = fv(["entrypoint.py", *argv], known_only=True)[1:]
    except flags.Error as error:
        raise UserInputError(str(error)) from None
    if leftover:
        logging.warning("ignoring arguments this trainer does not know: %s", " ".join(leftover))
    shared_flags.check_finite_numbers(fv)
    task, why, training_data = choose_task(fv.task, _flag_names(argv), fv.training_data_path)
    logging.info("task: %s (chosen by %s)", task, why)
    spec = TASK_SPECS[task]
    config = shared_flags.read_job_config(fv, task, spec.read_params(fv), leftover, spec.defaults)
    return dataclasses.replace(config, training_data=training_data)


def run_job(config: JobConfig):
    from algorithms.runtime.trainer import train

    return train(TASK_SPECS[config.task].make_task(config), config)


def help_text() -> str:
    return new_flag_values().get_help(include_special_flags=False)
