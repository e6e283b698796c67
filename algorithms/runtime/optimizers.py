"""Optimizers from the built-ins' flags: TF1 argument names (`beta1`, `decay`, ...) mapped to Keras 3, and the
optimizer and peak learning rate chosen for the run when the user sets neither (`--optimizer_type=auto`)."""

import dataclasses

import keras

from algorithms.runtime.config import OptimizerConfig, TrainingDefaults
from core.errors import UserInputError

# For each optimizer_type: the Keras class, the TF1 constructor defaults the built-ins used, and how each
# accepted argument name (TF1 name or Keras name) maps to the Keras argument. `None` means accepted and ignored.
_OPTIMIZERS = {
    "momentum": (keras.optimizers.SGD, {"momentum": 0.9},
                 {"momentum": "momentum", "use_nesterov": "nesterov", "nesterov": "nesterov",
                  "use_locking": None, "name": None}),
    "adam": (keras.optimizers.Adam, {"epsilon": 1e-8},
             {"beta1": "beta_1", "beta2": "beta_2", "beta_1": "beta_1", "beta_2": "beta_2", "epsilon": "epsilon",
              "amsgrad": "amsgrad", "use_locking": None, "name": None}),
    "rmsprop": (keras.optimizers.RMSprop, {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-10},
                {"decay": "rho", "rho": "rho", "momentum": "momentum", "epsilon": "epsilon", "centered": "centered",
                 "use_locking": None, "name": None}),
    "adadelta": (keras.optimizers.Adadelta, {"rho": 0.95, "epsilon": 1e-8},
                 {"rho": "rho", "epsilon": "epsilon", "use_locking": None, "name": None}),
    "adagrad": (keras.optimizers.Adagrad, {"initial_accumulator_value": 0.1},
                {"initial_accumulator_value": "initial_accumulator_value", "epsilon": "epsilon",
                 "use_locking": None, "name": None}),
}
OPTIMIZER_TYPES = tuple(_OPTIMIZERS)
AUTO = "auto"
# Runs up to this many steps get Adam at a fixed rate, longer ones momentum at the batch-scaled rate: from
# scratch with small batches, momentum's rate (scaled from TPU batch sizes) is far too low for a short run,
# while Adam's advantage fades over long schedules, where momentum generalises better (Ultralytics'
# optimizer=auto draws the same line at 10,000 iterations; bench/accuracy_bench.py measures both sides).
SHORT_RUN_MAX_STEPS = 10_000
_BOOLEAN_ARGUMENTS = {"nesterov", "centered", "amsgrad"}


def _parse_value(keras_name: str, raw: str, item: str):
    lowered = raw.strip().lower()
    if keras_name in _BOOLEAN_ARGUMENTS:
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise UserInputError(f"--optimizer_arguments: {item!r} needs true or false")
    try:
        value = float(lowered)
    except ValueError:
        raise UserInputError(f"--optimizer_arguments: {item!r} is not a number; write name=value, e.g. momentum=0.9") from None
    if value < 0:
        raise UserInputError(f"--optimizer_arguments: {item!r} must be >= 0")
    return value


def parse_optimizer_config(optimizer_type: str, arguments: str) -> OptimizerConfig:
    """Validates --optimizer_type and maps --optimizer_arguments ("name=value,...") to Keras kwargs."""
    optimizer_type = (optimizer_type or "").strip().lower()
    if optimizer_type not in _OPTIMIZERS:
        raise UserInputError(f"--optimizer_type={optimizer_type!r} is not supported; use one of {', '.join(OPTIMIZER_TYPES)}")
    _, defaults, accepted = _OPTIMIZERS[optimizer_type]
    kwargs = dict(defaults)
    for item in filter(None, (part.strip() for part in (arguments or "").split(","))):
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name or not raw.strip():
            raise UserInputError(f"--optimizer_arguments: {item!r} is malformed; write a comma list of name=value, "
                                 "e.g. --optimizer_arguments=momentum=0.9,use_nesterov=false")
        if name not in accepted:
            names = ", ".join(sorted(n for n, k in accepted.items() if k))
            raise UserInputError(f"--optimizer_arguments: {name!r} is not an argument of the {optimizer_type} optimizer; "
                                 f"it accepts {names}")
        keras_name = accepted[name]
        value = _parse_value(keras_name or name, raw, item)
        if keras_name:
            kwargs[keras_name] = value
    return OptimizerConfig(optimizer_type=optimizer_type, keras_arguments=kwargs)


def build_optimizer(config: OptimizerConfig, learning_rate) -> keras.optimizers.Optimizer:
    optimizer_class = _OPTIMIZERS[config.optimizer_type][0]
    return optimizer_class(learning_rate=learning_rate, **config.keras_arguments)


@dataclasses.dataclass(frozen=True)
class OptimizerChoice:
    config: OptimizerConfig
    learning_rate: float
    reason: str  # for the log: which flags decided, or why the run got this optimizer and rate


def default_learning_rate(optimizer_type: str, batch: int, defaults: TrainingDefaults, title: str) -> float:
    per_256 = defaults.learning_rate_per_256.get(optimizer_type)
    if per_256:
        return per_256 * batch / 256
    fixed = defaults.fixed_learning_rate.get(optimizer_type)
    if fixed is None:
        raise UserInputError(f"--optimizer_type={optimizer_type} has no default learning rate for {title}; give "
                             "--initial_learning_rate")
    return fixed


def choose_optimizer(optimizer_type: str | None, arguments: str, learning_rate: float | None, max_steps: int,
                     batch: int, defaults: TrainingDefaults, title: str) -> OptimizerChoice:
    """The optimizer and peak rate of a run. Explicit flags always win; `auto` (or no --optimizer_type) keeps the
    built-ins' momentum where the command line speaks momentum's language (a rate or arguments given with no
    optimizer), else picks by run length (SHORT_RUN_MAX_STEPS)."""
    requested = (optimizer_type or AUTO).strip().lower()
    if requested != AUTO:
        given = "--initial_learning_rate" if learning_rate is not None else "its default for " + title
        chosen, reason = requested, f"--optimizer_type={requested}, learning rate from {given}"
    elif learning_rate is not None or (arguments or "").strip():
        given = "--initial_learning_rate" if learning_rate is not None else "--optimizer_arguments"
        chosen, reason = "momentum", (f"--optimizer_type=auto chose momentum: {given} set without --optimizer_type: "
                                      "the built-ins' optimizer, momentum, as in their command lines")
    elif max_steps <= SHORT_RUN_MAX_STEPS:
        chosen, reason = "adam", (f"--optimizer_type=auto chose adam: a short run ({max_steps} <= "
                                  f"{SHORT_RUN_MAX_STEPS} steps): Adam at a fixed rate learns faster than momentum at "
                                  "a rate scaled for large batches")
    else:
        chosen, reason = "momentum", (f"--optimizer_type=auto chose momentum: a long run ({max_steps} > "
                                      f"{SHORT_RUN_MAX_STEPS} steps): momentum at the rate scaled by the batch "
                                      f"({batch}) generalises better over a long schedule")
    config = parse_optimizer_config(chosen, arguments)
    rate = learning_rate if learning_rate is not None else default_learning_rate(chosen, batch, defaults, title)
    return OptimizerChoice(config, rate, reason)
