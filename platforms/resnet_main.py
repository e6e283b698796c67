"""The TPU ResNet trainer's command line on top of ours: `resnet_main`'s flags (seed 002's
`gcloud ml-engine jobs submit training ... -- --data_dir=... --resnet_depth=18 ...`).

Each alias sets one of our flags; giving both an alias and its flag with different values is an error. The
TPU-only flags are accepted and logged: they tune the TPU runtime and change nothing here.
"""

from absl import flags, logging

from core.errors import UserInputError

# resnet_main flag -> our flag, for the ones that are the same setting under another name.
RENAMED = {"model_dir": "job_dir", "train_steps": "max_steps", "steps_per_eval": "train_steps_per_eval",
           "num_label_classes": "num_classes"}
# resnet_main flags that only configure the TPU runtime or its host-side logging.
TPU_ONLY = ("tpu", "tpu_zone", "gcp_project", "use_tpu", "skip_host_call", "iterations_per_loop", "num_cores",
            "num_parallel_calls", "transpose_input", "use_async_checkpointing", "precision", "data_format",
            "log_step_count_steps", "export_to_tpu", "use_cache", "bigtable_project", "bigtable_instance",
            "bigtable_table", "bigtable_column_family", "bigtable_column_qualifier", "bigtable_train_prefix",
            "bigtable_eval_prefix", "profile_every_n_steps", "mode", "enable_lars", "poly_rate")


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("data_dir", None, "resnet_main: folder holding train-* and validation-* TFRecords (sets --training_data_path and --validation_data_path).", flag_values=fv)
    flags.DEFINE_string("model_dir", None, "resnet_main: same as --job_dir.", flag_values=fv)
    flags.DEFINE_integer("train_steps", None, "resnet_main: same as --max_steps.", flag_values=fv)
    flags.DEFINE_integer("steps_per_eval", None, "resnet_main: same as --train_steps_per_eval.", flag_values=fv)
    flags.DEFINE_integer("num_label_classes", None, "resnet_main: same as --num_classes.", flag_values=fv)
    flags.DEFINE_integer("num_train_images", None, "Training images (resnet_main); with --epochs it saves counting the records.", flag_values=fv)
    flags.DEFINE_string("export_dir", None, "resnet_main: the best model is also copied to <export_dir>/<unix time>/ when the job ends.", flag_values=fv)
    flags.DEFINE_float("base_learning_rate", None, "resnet_main: learning rate per 256 images (sets --initial_learning_rate to it x train_batch_size/256).", flag_values=fv)
    flags.DEFINE_float("momentum", None, "resnet_main: momentum of the momentum optimizer (sets --optimizer_arguments=momentum=...).", flag_values=fv)
    for name in TPU_ONLY:
        flags.DEFINE_string(name, None, "resnet_main, TPU-only: accepted and logged, no effect here.", flag_values=fv)


def _same(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.rstrip("/") == b.rstrip("/")  # gs://b/out/ and gs://b/out are one directory
    return a == b


def _set(fv: flags.FlagValues, given: set[str], target: str, value, source: str) -> None:
    if target in given and not _same(fv[target].value, value):
        raise UserInputError(f"--{source} sets --{target}={value}, but --{target}={fv[target].value} is given too; "
                             "give one of them")
    fv[target].value = value
    given.add(target)


def apply(fv: flags.FlagValues, given: set[str]) -> set[str]:
    """Moves the aliases' values onto our flags; returns `given` with the flags they set."""
    given = set(given)
    for alias, target in RENAMED.items():
        if alias in given:
            _set(fv, given, target, fv[alias].value, f"{alias}={fv[alias].value}")
    if "data_dir" in given:
        root = fv.data_dir.rstrip("/")
        _set(fv, given, "training_data_path", f"{root}/train-*", f"data_dir={fv.data_dir}")
        _set(fv, given, "validation_data_path", f"{root}/validation-*", f"data_dir={fv.data_dir}")
    if "base_learning_rate" in given:
        rate = fv.base_learning_rate * fv.train_batch_size / 256
        _set(fv, given, "initial_learning_rate", rate, f"base_learning_rate={fv.base_learning_rate}")
    if "momentum" in given:
        if "optimizer_arguments" in given:
            raise UserInputError("--momentum and --optimizer_arguments both set the optimizer's arguments; "
                                 f"write --optimizer_arguments=momentum={fv.momentum} alone")
        _set(fv, given, "optimizer_arguments", f"momentum={fv.momentum}", f"momentum={fv.momentum}")
    tpu_only = sorted(given & set(TPU_ONLY))
    if tpu_only:
        logging.info("accepted and ignored (they configure a TPU runtime): %s",
                     " ".join(f"--{name}={fv[name].value}" for name in tpu_only))
    return given
