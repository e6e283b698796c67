"""Optimizers from the built-ins' flags: TF1 argument names (`beta1`, `decay`, ...) mapped to Keras 3."""

import keras

from algorithms.runtime.config import OptimizerConfig
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
