"""SageMaker's training contract for a bring-your-own container: `IMAGE train`, everything through files.

SageMaker starts the container as `IMAGE train` and speaks to it only through `/opt/ml` (the root is
SAGEMAKER_BASE_DIR when set, as in SageMaker's own toolkit, so tests use a temp dir):
- input/config/hyperparameters.json: every value a string, sometimes JSON-quoted again ("\"adam\"");
  input/config/inputdataconfig.json: the channels; input/config/resourceconfig.json: the hosts.
- input/data/training and input/data/validation: class folders or TFRecords (no validation channel: a seeded
  validation_split_ratio share of the class folders is held out).
- model/: uploaded as model.tar.gz; the best SavedModel goes to model/1/ (SageMaker's TensorFlow Serving
  container serves numbered versions as they are) with labels.txt beside it.
- checkpoints/: synced to S3 by managed spot training and put back on a restarted instance: the job resumes.
- output/data/: uploaded as output.tar.gz (the report); output/failure: the one-line reason of a failed job.

The hyperparameter names of SageMaker's "Image Classification - TensorFlow" built-in map onto our flags, or are
refused with the reason; our own flag names are accepted as they are. The job itself is the same code path as
every other entry: these files become a command line and a JobLayout.

Not the `sagemaker-training` toolkit: it installs from source only (a C extension) and brings boto3, gevent,
paramiko and more into a runtime image that needs none of them for reading three JSON files.
"""

import dataclasses
import json
import os

from absl import logging

from algorithms.runtime.job_layout import JobLayout
from algorithms.runtime.placement import Placement
from core.errors import UserInputError

BASE_DIR_VARIABLE = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"
MODEL_VERSION = "1"
WORKER_PORT = 2222  # the TensorFlow cluster port between SageMaker hosts
CHANNELS = ("training", "validation")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_NOT_RECORDS = (".txt", ".csv", ".json", ".md", ".yaml")

# SageMaker optimizer names -> (our --optimizer_type, the SageMaker hyperparameters it reads -> its argument).
_OPTIMIZERS = {
    "adam": ("adam", {"beta_1": "beta_1", "beta_2": "beta_2", "epsilon": "epsilon"}),
    "sgd": ("momentum", {"momentum": "momentum"}),
    "nesterov": ("momentum", {"momentum": "momentum"}),
    "rmsprop": ("rmsprop", {"rho": "rho", "momentum": "momentum", "epsilon": "epsilon"}),
    "adagrad": ("adagrad", {"initial_accumulator_value": "initial_accumulator_value", "epsilon": "epsilon"}),
    "adadelta": ("adadelta", {"rho": "rho", "epsilon": "epsilon"}),
}
_OPTIMIZER_ARGUMENTS = {"beta_1", "beta_2", "epsilon", "momentum", "rho", "initial_accumulator_value"}
# SageMaker name -> (our flag, the kind of value), where only the name differs.
_RENAMED = {"epochs": ("epochs", "number"), "batch_size": ("train_batch_size", "integer"),
            "learning_rate": ("initial_learning_rate", "number"), "dropout_rate": ("dropout_rate", "number"),
            "regularizers_l2": ("regularizers_l2", "number"), "train_only_top_layer": ("train_only_top_layer", "boolean"),
            "label_smoothing": ("label_smoothing", "number"), "validation_split_ratio": ("validation_split_ratio", "number")}


@dataclasses.dataclass(frozen=True)
class SageMakerJob:
    argv: list  # our command line
    placement: Placement  # the fixed directories under /opt/ml and, with several hosts, the cluster


def base_dir() -> str:
    return os.environ.get(BASE_DIR_VARIABLE, DEFAULT_BASE_DIR).rstrip("/")


def failure_file() -> str:
    """SageMaker shows this file's text as the job's FailureReason."""
    return f"{base_dir()}/output/failure"


def hyperparameters_of(argv: list[str]) -> dict[str, str]:
    """The hyperparameters of a SageMaker invocation (`train`), {} for any other command line or when the file
    cannot be read (the job's own reading of it says what is wrong)."""
    if not argv or argv[0] != "train":
        return {}
    try:
        return read_hyperparameters()
    except UserInputError:
        return {}


def _read_json(path: str, default):
    if not os.path.exists(path):
        return default
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise UserInputError(f"{path} is not readable JSON: {error}") from None


def read_hyperparameters(root: str | None = None) -> dict[str, str]:
    """hyperparameters.json, each value unquoted to the string the user gave ({} when there is none)."""
    values = _read_json(f"{root or base_dir()}/input/config/hyperparameters.json", None) or {}
    return {name: _unquote(value) for name, value in values.items()}


def _unquote(value) -> str:
    """SageMaker passes every hyperparameter as a string; the Python SDK JSON-encodes some a second time."""
    if not isinstance(value, str):
        return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
            if isinstance(decoded, str):
                return decoded
        except json.JSONDecodeError:
            pass
    return text


def _boolean(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise UserInputError(f"hyperparameter {name}={text!r} must be \"True\" or \"False\"")


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserInputError(f"hyperparameter {name}={text!r} must be a number") from None


def _refuse(name: str, value: str, why: str) -> None:
    raise UserInputError(f"hyperparameter {name}={value!r} is not supported: {why}")


def hyperparameter_flags(hyperparameters: dict, our_flags: set[str]) -> list[str]:
    """SageMaker image-classification hyperparameters (and our own flag names) -> our command line."""
    values = {name: _unquote(value) for name, value in hyperparameters.items()}
    argv, ignored = [], []
    for name in sorted(values):
        value = values[name]
        if name.startswith("sagemaker_") or name.startswith("_"):
            ignored.append(name)  # the SDK's own settings (sagemaker_region, sagemaker_job_name, ...)
        elif name in _RENAMED:
            flag, kind = _RENAMED[name]
            if kind == "boolean":
                _boolean(name, value)
            elif kind == "integer" and not value.strip().lstrip("-").isdigit():
                raise UserInputError(f"hyperparameter {name}={value!r} must be an integer")
            else:
                _number(name, value)
            argv.append(f"--{flag}={value}")
        elif name in _OPTIMIZER_ARGUMENTS or name == "optimizer":
            continue  # below, together
        elif name == "early_stopping":
            if _boolean(name, value):
                argv.append(f"--early_stopping_patience={values.get('early_stopping_patience', '5')}")
        elif name == "early_stopping_patience":
            if "early_stopping" not in values:  # our own flag of the same name
                argv.append(f"--{name}={value}")
        elif name == "early_stopping_min_delta":
            if _number(name, value) != 0:
                _refuse(name, value, "early stopping here counts evaluations without any better metric (a min delta "
                        "of 0); leave it at 0")
        elif name == "reinitialize_top_layer":
            if value.lower() not in ("auto", "true", "false"):
                _refuse(name, value, "use Auto, True or False")
            if value.lower() == "true" and "pretrained_checkpoint_path" in values:
                _refuse(name, value, "a starting checkpoint's head is kept when it has as many classes as the data "
                        "(Auto); True is not offered")
        elif name == "image_resize_interpolation":
            if value.lower() != "bilinear":
                _refuse(name, value, "training, evaluation and the exported model all resize with bilinear "
                        "interpolation, and the served model must resize as training did")
        elif name == "binary_mode":
            if _boolean(name, value):
                _refuse(name, value, "the model returns one probability per class; for two classes read "
                        "probabilities[:, 1] (the second class in labels.txt)")
        elif name == "eval_metric":
            if value.lower() != "accuracy":
                _refuse(name, value, "the evaluation metric is top-1 accuracy (top_1_accuracy)")
        elif name.startswith("augmentation"):
            continue  # below, together
        elif name in our_flags:
            argv.append(f"--{name}={value}")
        else:
            raise UserInputError(f"hyperparameter {name}={value!r} is unknown: neither a SageMaker image-classification "
                                 "hyperparameter nor a flag of this trainer (see `train --help` for the flags)")
    argv += _optimizer_flags(values)
    _check_augmentation(values)
    if "epochs" not in values and "max_steps" not in values:
        argv.append("--epochs=3")  # SageMaker's default
        logging.info("no epochs given: 3, SageMaker's default")
    if ignored:
        logging.info("hyperparameters left to SageMaker: %s", ", ".join(ignored))
    return argv


def _optimizer_flags(values: dict) -> list[str]:
    """`optimizer` picks ours; beta_1, momentum, rho, ... become its arguments (ignored by the others, as
    SageMaker documents)."""
    if "optimizer" not in values:
        given = sorted(_OPTIMIZER_ARGUMENTS & set(values))
        if given:
            raise UserInputError(f"hyperparameter {given[0]} needs the optimizer it belongs to: give optimizer "
                                 f"(one of {', '.join(_OPTIMIZERS)}) too")
        return []
    name = values["optimizer"].lower()
    if name not in _OPTIMIZERS:
        _refuse("optimizer", values["optimizer"], f"use one of {', '.join(_OPTIMIZERS)}")
    optimizer_type, arguments = _OPTIMIZERS[name]
    pairs = [f"{ours}={_number(theirs, values[theirs])}" for theirs, ours in arguments.items() if theirs in values]
    if name == "nesterov":
        pairs.append("use_nesterov=true")
    if name == "sgd" and "momentum" not in values:
        pairs.append("momentum=0")  # SageMaker's plain SGD: no momentum unless asked
    return [f"--optimizer_type={optimizer_type}", *([f"--optimizer_arguments={','.join(pairs)}"] if pairs else [])]


def _check_augmentation(values: dict) -> None:
    """SageMaker's `augmentation` (off by default) adds flips, rotations and zooms. This trainer always augments
    training images the way Google's built-in does: random crops of 8-100% of the image area (a zoom) and
    left-right flips. Settings it cannot honour are refused rather than silently changed."""
    if "augmentation" not in values or not _boolean("augmentation", values["augmentation"]):
        unused = sorted(name for name in values if name.startswith("augmentation_"))
        if unused:
            logging.info("augmentation is off: %s have no effect (as on SageMaker); training images are still "
                         "randomly cropped and flipped left-right", ", ".join(unused))
        return
    flip = values.get("augmentation_random_flip", "horizontal_and_vertical")
    if flip.lower() not in ("horizontal", "none"):
        _refuse("augmentation_random_flip", flip, "training flips images left-right only (upside-down photos are "
                "rarely the same class); use horizontal")
    rotation = values.get("augmentation_random_rotation", "0.2")
    if _number("augmentation_random_rotation", rotation) != 0:
        _refuse("augmentation_random_rotation", rotation, "training does not rotate images; set it to 0")
    zoom = values.get("augmentation_random_zoom", "0.1")
    if not -1 <= _number("augmentation_random_zoom", zoom) <= 1:
        _refuse("augmentation_random_zoom", zoom, "use a value in [-1, 1]")
    logging.info("augmentation: random crops of 8-100%% of the image area (covering augmentation_random_zoom=%s) "
                 "and left-right flips", zoom)


def _channel_path(directory: str, channel: str) -> tuple[str, str | None]:
    """(what --<channel>_data_path should be, a labels file found there): the folder when it holds class
    folders, else a glob of its record files (labels.txt and other text files beside them left out)."""
    from data import image_sources

    if image_sources.is_class_folder_tree(directory):
        return directory, None
    names = sorted(n for n in os.listdir(directory) if not n.startswith(".")
                   and os.path.isfile(os.path.join(directory, n)))
    records = [n for n in names if not n.lower().endswith(_NOT_RECORDS)]
    labels = os.path.join(directory, "labels.txt") if "labels.txt" in names else None
    if not records:
        raise UserInputError(f"the {channel} channel ({directory}) holds neither class folders of images nor "
                             "TFRecord files")
    if len(records) == len(names):
        return f"{directory}/*", labels
    prefix = os.path.commonprefix(records)
    suffixes = {os.path.splitext(n)[1] for n in records}
    if prefix:
        return f"{directory}/{prefix}*", labels
    if len(suffixes) == 1 and "" not in suffixes:
        return f"{directory}/*{suffixes.pop()}", labels
    raise UserInputError(f"the {channel} channel ({directory}) mixes TFRecord files without a common name or "
                         "extension with other files; give the records one prefix (train-*) or extension")


def cluster_config(resources: dict) -> dict | None:
    """SageMaker's hosts as the TF_CONFIG of a MultiWorkerMirrored cluster (worker 0, algo-1, is the chief);
    None for one host."""
    hosts = resources.get("hosts") or []
    if len(hosts) < 2:
        return None
    current = resources.get("current_host")
    if current not in hosts:
        raise UserInputError(f"resourceconfig.json: current_host {current!r} is not among the hosts {hosts}")
    return {"cluster": {"worker": [f"{host}:{WORKER_PORT}" for host in sorted(hosts)]},
            "task": {"type": "worker", "index": sorted(hosts).index(current)}}


def read_job(our_flags: set[str], root: str | None = None) -> SageMakerJob:
    """The files under the SageMaker root -> our command line, the output directories and the cluster."""
    root = root or base_dir()
    config_dir = f"{root}/input/config"
    layout = JobLayout(model_dir=f"{root}/model/{MODEL_VERSION}", checkpoint_dir=f"{root}/checkpoints",
                       report_dir=f"{root}/output/data", tensorboard_dir=f"{root}/output/tensorboard")
    hyperparameters = _read_json(f"{config_dir}/hyperparameters.json", None)
    data_dir = f"{root}/input/data"
    if hyperparameters is None and not os.path.isdir(data_dir):
        raise UserInputError(f"`train` runs a SageMaker training job, but {config_dir}/hyperparameters.json and "
                             f"{data_dir} do not exist; set {BASE_DIR_VARIABLE} if the SageMaker root is not "
                             f"{DEFAULT_BASE_DIR}, or run without `train` and give the flags")
    for directory in (f"{root}/model", f"{root}/checkpoints", f"{root}/output"):
        if os.path.isdir(directory) and not os.access(directory, os.W_OK):
            raise UserInputError(f"{directory} is not writable by this process (uid {os.getuid()}); build the image "
                                 "with --build-arg RUN_AS=0:0 so it runs as root, as SageMaker's own images do")
    argv = hyperparameter_flags(hyperparameters or {}, our_flags)
    channels = _read_json(f"{config_dir}/inputdataconfig.json", {}) or {
        name: {} for name in CHANNELS if os.path.isdir(f"{data_dir}/{name}")}
    for name, settings in sorted(channels.items()):
        mode = (settings or {}).get("TrainingInputMode", "File")
        if name not in CHANNELS:
            raise UserInputError(f"channel {name!r} is not read by this algorithm: give the data as the 'training' "
                                 "channel and, optionally, 'validation'")
        if mode not in ("File", "FastFile"):
            raise UserInputError(f"channel {name!r} uses TrainingInputMode {mode}; this algorithm reads files: use "
                                 "File or FastFile")
    if "training" not in channels:
        raise UserInputError("no 'training' channel: pass the data to estimator.fit({'training': 's3://...'})")
    labels_file = None
    for name, flag in (("training", "training_data_path"), ("validation", "validation_data_path")):
        if name in channels:
            path, labels = _channel_path(f"{data_dir}/{name}", name)
            argv.append(f"--{flag}={path}")
            labels_file = labels_file or labels
    if labels_file and not any(arg.startswith("--labels_file=") for arg in argv):
        argv.append(f"--labels_file={labels_file}")
    cluster = cluster_config(_read_json(f"{config_dir}/resourceconfig.json", {}) or {}) or {}
    return SageMakerJob(argv=argv, placement=Placement(cluster=cluster, fixed_layout=layout))


def write_failure(path: str, reason: str) -> None:
    """SageMaker shows output/failure as the job's FailureReason (failure_file())."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(reason.strip() + "\n")
    except OSError as error:
        logging.warning("could not write %s: %s", path, error)
