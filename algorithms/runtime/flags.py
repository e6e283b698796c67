"""Flags every algorithm accepts (the built-ins' shared arguments), their ranges, and their reading into JobConfig."""

import dataclasses
import math

from absl import flags, logging

from algorithms.runtime.config import JobConfig, OptimizerConfig, ScheduleConfig, TrainingDefaults
from algorithms.runtime.optimizers import AUTO, OPTIMIZER_TYPES, SHORT_RUN_MAX_STEPS, choose_optimizer
from algorithms.runtime.schedules import DECAY_TYPES, validate_schedule
from core.errors import UserInputError
from core.seeds import MAX_SEED
from dataloaders.image_ops import DEFAULT_MAX_IMAGE_PIXELS

@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric flag may take; `note` says what a boundary value means (e.g. "0 = off")."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False
    note: str = ""

    def holds(self, value) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def text(self) -> str:
        if self.high is None:
            text = f"> {self.low}" if self.low_open else "at least 1" if self.low == 1 else f">= {self.low}"
        elif isinstance(self.low, int) and isinstance(self.high, int) and not (self.low_open or self.high_open):
            text = f"in {self.low}..{self.high}"
        else:
            text = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        return f"{text} ({self.note})" if self.note else text


AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0.0, 1.0)
FRACTION_BELOW_ONE = Range(0.0, 1.0, high_open=True)

# The shared flags' ranges; each task adds its own (TaskSpec.flag_ranges). Checked together, after the types
# (absl) and before anything is built, by check_ranges.
SHARED_RANGES = {
    "num_classes": AT_LEAST_ONE, "max_steps": AT_LEAST_ONE, "train_batch_size": AT_LEAST_ONE, "eval_batch_size": AT_LEAST_ONE,
    "train_steps_per_eval": AT_LEAST_ONE, "log_every_steps": AT_LEAST_ONE, "max_image_pixels": AT_LEAST_ONE,
    "num_eval_images": Range(0, note="0 = all validation images"),
    "early_stopping_patience": Range(0, note="0 = off"),
    "seed": Range(0, MAX_SEED), "weight_decay": NON_NEGATIVE, "max_bad_image_fraction": FRACTION,
    "moving_average_decay": Range(0.0, 1.0, high_open=True, note="0 = off"),
}


def check_ranges(fv: flags.FlagValues, ranges: dict) -> None:
    """Every numeric flag against its Range (an unset optional flag, None, is not checked)."""
    for name, allowed in ranges.items():
        value = fv[name].value
        if value is not None and not allowed.holds(value):
            raise UserInputError(f"--{name}={value} must be {allowed.text()}")


def _fraction(value: float) -> str:
    return f"{value:.4g}"


def _learning_rate_text(defaults: TrainingDefaults) -> str:
    scaled = [f"{_fraction(rate)}*batch/256 ({name})" for name, rate in defaults.learning_rate_per_256.items()]
    fixed = [f"{_fraction(rate)} ({name})" for name, rate in defaults.fixed_learning_rate.items()
             if name not in defaults.learning_rate_per_256]
    return ", ".join(scaled + fixed)


def _stepwise_texts(defaults: TrainingDefaults) -> tuple[str, str]:
    if not defaults.stepwise_step_fractions:
        return "", ""
    steps = " and ".join(_fraction(f) for f in defaults.stepwise_step_fractions) + " of max_steps"
    levels = "initial x " + ", ".join(_fraction(f) for f in defaults.stepwise_level_factors)
    return steps, levels


def _task_defaults_help(tasks) -> dict:
    """{flag: "; default: <value> (<task>); ..."} from each task's TrainingDefaults, then "; <note> (<task>)" for
    each task's flag notes."""
    defaults_by_flag, notes_by_flag = {}, {}

    def add(texts: dict, flag: str, task: str, text: str) -> None:
        if text:
            texts.setdefault(flag, []).append(f"{text} ({task})")

    for spec in tasks:
        defaults = spec.defaults
        add(defaults_by_flag, "learning_rate_decay_type", spec.name, defaults.decay_type)
        add(defaults_by_flag, "moving_average_decay", spec.name, f"{defaults.moving_average_decay:g}")
        add(defaults_by_flag, "initial_learning_rate", spec.name, _learning_rate_text(defaults))
        fraction = defaults.warmup_learning_rate_fraction
        add(defaults_by_flag, "warmup_learning_rate", spec.name,
            f"initial x {_fraction(fraction)}" if fraction else "0")
        steps, levels = _stepwise_texts(defaults)
        add(defaults_by_flag, "stepwise_learning_rate_steps", spec.name, steps)
        add(defaults_by_flag, "stepwise_learning_rate_levels", spec.name, levels)
        for flag, note in spec.flag_notes.items():
            add(notes_by_flag, flag, spec.name, note)
    help_texts = {flag: "; default: " + "; ".join(parts) for flag, parts in defaults_by_flag.items()}
    for flag, parts in notes_by_flag.items():
        help_texts[flag] = help_texts.get(flag, "") + "; " + "; ".join(parts)
    return help_texts


def define_shared_flags(fv: flags.FlagValues, tasks) -> None:
    """The flags every task reads; `tasks` (TaskSpecs) name the --task values and their defaults in the help."""
    notes = _task_defaults_help(tasks)

    def help_of(flag: str, text: str) -> str:
        return text + notes.get(flag, "") + "."

    flags.DEFINE_enum("task", None, [spec.name for spec in tasks], "Which algorithm to train; default: decided from the flags and the data.", flag_values=fv)
    flags.DEFINE_string("training_data_path", None, "TFRecord file or glob of the training data (local or gs://). Required.", flag_values=fv)
    flags.DEFINE_string("validation_data_path", None, "TFRecord file or glob of the validation data (local or gs://). Required.", flag_values=fv)
    flags.DEFINE_string("job_dir", None, "Output root: model/, checkpoints/ (also --job-dir; on Vertex AI the platform gives the directories).", flag_values=fv)
    flags.DEFINE_integer("num_classes", None, help_of("num_classes", "Number of classes; labels in the data are 1..num_classes. Required, except for class folders (counted) and tasks without classes"), flag_values=fv)
    flags.DEFINE_integer("max_steps", None, "Total training steps. Required unless --epochs is given.", flag_values=fv)
    flags.DEFINE_float("epochs", None, "Training length in passes over the training images instead of --max_steps: max_steps = ceil(epochs x images / train_batch_size); images from --num_train_images, else counted.", flag_values=fv)
    flags.DEFINE_integer("train_batch_size", 32, "Images per training step (global, across all replicas).", flag_values=fv)
    flags.DEFINE_integer("eval_batch_size", None, "Images per evaluation batch; default: train_batch_size.", flag_values=fv)
    flags.DEFINE_integer("num_eval_images", 0, "Validation images per evaluation; 0 = all of them.", flag_values=fv)
    flags.DEFINE_integer("train_steps_per_eval", 1000, "Training steps between evaluations (and checkpoints).", flag_values=fv)
    flags.DEFINE_integer("log_every_steps", 100, "Training steps between progress lines.", flag_values=fv)
    flags.DEFINE_string("learning_rate_decay_type", None, help_of("learning_rate_decay_type", f"Decay after warm-up: {', '.join(DECAY_TYPES)}"), flag_values=fv)
    flags.DEFINE_float("initial_learning_rate", None, help_of("initial_learning_rate", "Peak learning rate after warm-up"), flag_values=fv)
    flags.DEFINE_float("warmup_learning_rate", None, help_of("warmup_learning_rate", "Learning rate at step 0, rising linearly to initial_learning_rate"), flag_values=fv)
    flags.DEFINE_integer("warmup_steps", None, "Warm-up length in steps; default: 5% of max_steps.", flag_values=fv)
    flags.DEFINE_integer("decay_steps", None, "Cosine: steps of decay (default max_steps - warmup_steps); exponential: steps per 0.97 factor (default 1% of that).", flag_values=fv)
    flags.DEFINE_string("stepwise_learning_rate_steps", "", help_of("stepwise_learning_rate_steps", "Comma list of global steps where the stepwise rate changes, e.g. 60000,80000"), flag_values=fv)
    flags.DEFINE_string("stepwise_learning_rate_levels", "", help_of("stepwise_learning_rate_levels", "Comma list of the learning rates from each of those steps on"), flag_values=fv)
    flags.DEFINE_string("optimizer_type", None, f"Optimizer: {AUTO}, {', '.join(OPTIMIZER_TYPES)}. Default {AUTO}: momentum when --initial_learning_rate or --optimizer_arguments is set (the built-ins' optimizer), else adam at a fixed rate for runs of up to {SHORT_RUN_MAX_STEPS} steps and momentum at the batch-scaled rate for longer ones; the job logs its choice.", flag_values=fv)
    flags.DEFINE_float("moving_average_decay", None, help_of("moving_average_decay", "Exponential moving average of the weights, which evaluation, the exported model and hypertune use (checkpoints keep both): its decay, warmed up as min(decay, (1+step)/(10+step)) so short runs average too; 0 = off"), flag_values=fv)
    flags.DEFINE_string("optimizer_arguments", "", "Comma list of name=value with TF1 names, e.g. momentum=0.9 or beta1=0.9,beta2=0.999.", flag_values=fv)
    flags.DEFINE_string("image_size", None, help_of("image_size", "Input size of the model, in pixels"), flag_values=fv)
    flags.DEFINE_float("weight_decay", 0.0001, "L2 coefficient on the weights: loss = task loss + weight_decay * L2.", flag_values=fv)
    flags.DEFINE_string("pretrained_checkpoint_path", None, "Checkpoint (prefix, dir, job dir or exported model; local or gs://) to warm-start from.", flag_values=fv)
    flags.DEFINE_float("max_bad_image_fraction", 0.01, "Undecodable or too large images, and the unreadable rest of a cut TFRecord file, are skipped; fail when more than this fraction of the records is.", flag_values=fv)
    flags.DEFINE_integer("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "Images with more pixels (width x height, read from the header) are skipped as undecodable instead of being decoded; the exported model refuses them too.", flag_values=fv)
    flags.DEFINE_string("distribution_strategy", "auto", "auto (TPU, multi-worker, multi-GPU or default, from the environment), default, mirrored, multi_worker_mirrored or tpu.", flag_values=fv)
    flags.DEFINE_string("mixed_precision", "auto", "auto (float16 on tensor-core GPUs, bfloat16 on TPUs, off on CPUs), true, false, float16 or bfloat16.", flag_values=fv)
    flags.DEFINE_string("labels_file", None, "Class names, one per line (line i = label i); default: labels.txt next to the training data.", flag_values=fv)
    flags.DEFINE_integer("early_stopping_patience", 0, "Stop after this many evaluations without a better metric; 0 = never.", flag_values=fv)
    flags.DEFINE_integer("seed", None, "Seed of the run: initial weights, dropout, data order and augmentation; the same command with the same seed gives the same model on the same machine. Default: the job's recorded seed when it resumes, else one drawn, logged and recorded in the checkpoint dir (seed.json).", flag_values=fv)
    flags.DEFINE_enum("deterministic_ops", "auto", ("auto", "true", "false"), "TensorFlow's op determinism (repeatable ops, e.g. GPU reductions; on a CPU, TensorFlow's own kernels, not oneDNN's): auto = on when --seed is given.", flag_values=fv)


def parse_number_list(text: str, flag: str, kind=float) -> tuple:
    items = [part.strip() for part in (text or "").split(",") if part.strip()]
    try:
        return tuple(kind(item) for item in items)
    except ValueError:
        raise UserInputError(f"--{flag}={text!r} must be a comma list of {'integers' if kind is int else 'numbers'}") from None


def _require(fv: flags.FlagValues, name: str, example: str):
    value = fv[name].value
    if value is None or value == "":
        raise UserInputError(f"--{name} is required, e.g. --{name}={example}")
    return value


def check_finite_numbers(fv: flags.FlagValues) -> None:
    """absl's float flags accept 'nan' and 'inf'; no rate, threshold or weight here means anything with them."""
    for name, value in sorted(fv.flag_values_dict().items()):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"--{name}={value} must be a finite number")


def read_job_config(fv: flags.FlagValues, task_spec, task_params) -> JobConfig:
    """Validates the shared flags and builds the JobConfig of a `task_spec` (TaskSpec) job."""
    defaults = task_spec.defaults
    num_classes = _require(fv, "num_classes", "5") if task_spec.uses_classes else (fv.num_classes or 0)
    if fv.max_steps is None:
        raise UserInputError("--max_steps (or --epochs) is required, e.g. --max_steps=10000")
    max_steps = fv.max_steps

    batch = fv.train_batch_size
    choice = choose_optimizer(fv.optimizer_type, fv.optimizer_arguments, fv.initial_learning_rate, max_steps, batch,
                              defaults, task_spec.title)
    optimizer, learning_rate = choice.config, choice.learning_rate
    if defaults.gradient_clip_norm:
        optimizer = OptimizerConfig(optimizer.optimizer_type,
                                    {"global_clipnorm": defaults.gradient_clip_norm, **optimizer.keras_arguments})
    logging.info("optimizer: %s, peak learning rate %.5g (%s)", optimizer.optimizer_type, learning_rate, choice.reason)
    warmup_steps = fv.warmup_steps if fv.warmup_steps is not None else max_steps // 20
    warmup_learning_rate = (fv.warmup_learning_rate if fv.warmup_learning_rate is not None
                            else learning_rate * defaults.warmup_learning_rate_fraction)
    decay_type = (fv.learning_rate_decay_type or defaults.decay_type).strip().lower()
    decay_span = max(1, max_steps - warmup_steps)
    decay_steps = fv.decay_steps if fv.decay_steps is not None else (
        decay_span if decay_type != "exponential" else max(1, decay_span // 100))
    boundaries = parse_number_list(fv.stepwise_learning_rate_steps, "stepwise_learning_rate_steps", int)
    levels = parse_number_list(fv.stepwise_learning_rate_levels, "stepwise_learning_rate_levels", float)
    if decay_type == "stepwise" and not boundaries and not levels and defaults.stepwise_step_fractions:
        boundaries = []
        for fraction in defaults.stepwise_step_fractions:  # increasing even for a tiny max_steps
            boundaries.append(max(round(max_steps * fraction), boundaries[-1] + 1 if boundaries else 1))
        boundaries = tuple(boundaries)
        levels = tuple(learning_rate * f for f in defaults.stepwise_level_factors)
    schedule = ScheduleConfig(
        decay_type=decay_type, initial_learning_rate=learning_rate, warmup_learning_rate=warmup_learning_rate,
        warmup_steps=warmup_steps, decay_steps=decay_steps, exponential_decay_rate=0.97,
        stepwise_boundaries=boundaries, stepwise_levels=levels)
    validate_schedule(schedule)

    return JobConfig(
        task=task_spec.name, training_data_path=fv.training_data_path, validation_data_path=fv.validation_data_path,
        job_dir=fv.job_dir, num_classes=num_classes, max_steps=max_steps, train_batch_size=batch,
        eval_batch_size=fv.eval_batch_size or batch, num_eval_images=fv.num_eval_images,
        train_steps_per_eval=fv.train_steps_per_eval, log_every_steps=fv.log_every_steps,
        weight_decay=fv.weight_decay, pretrained_checkpoint_path=fv.pretrained_checkpoint_path or None,
        max_bad_image_fraction=fv.max_bad_image_fraction, max_image_pixels=fv.max_image_pixels, seed=fv.seed,
        deterministic_ops=fv.deterministic_ops,
        distribution_strategy=(fv.distribution_strategy or "auto").strip().lower(),
        mixed_precision=(fv.mixed_precision or "auto").strip().lower(),
        labels_file=fv.labels_file or None, early_stopping_patience=fv.early_stopping_patience, schedule=schedule, optimizer=optimizer,
        moving_average_decay=(fv.moving_average_decay if fv.moving_average_decay is not None
                              else defaults.moving_average_decay),
        task_params=task_params)


def strip_quotes(argv: list[str]) -> list[str]:
    """`--model_type='efficientnet-b4'` as gcloud passes it when the user quoted the value: quotes that wrap
    a whole value are not part of it, for every flag alike."""
    def unquote(value: str) -> str:
        inner = value.strip()
        if not (len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\""):
            return value  # unquoted values stay exactly as given
        while len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
            inner = inner[1:-1]
        return inner

    stripped = []
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
            arg = f"{name}={unquote(value)}"
        elif not arg.startswith("-"):
            arg = unquote(arg)
        stripped.append(arg)
    return stripped
