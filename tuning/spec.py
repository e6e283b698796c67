"""The tuning spec users already have, read into one form: AI Platform's `trainingInput.hyperparameters` (the
`gcloud ai-platform jobs submit training --config` file) or Vertex AI's `studySpec` with
`maxTrialCount`/`parallelTrialCount` (the `gcloud ai hp-tuning-jobs create --config` file). YAML or JSON;
camelCase or snake_case keys. A malformed spec is one UserInputError naming the field."""

import dataclasses
import math
import re

import yaml

from core.errors import UserInputError

SCALES = ("UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
ALGORITHMS = {"ALGORITHM_UNSPECIFIED": "tpe", "BAYESIAN_OPTIMIZATION": "tpe", "RANDOM_SEARCH": "random",
              "GRID_SEARCH": "grid"}


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    type: str  # DOUBLE, INTEGER, CATEGORICAL or DISCRETE
    low: float | None = None
    high: float | None = None
    scale: str = "UNIT_LINEAR_SCALE"
    values: tuple = ()  # CATEGORICAL (strings) or DISCRETE (numbers, ascending)

    def grid(self) -> list:
        if self.type == "INTEGER":
            return list(range(int(self.low), int(self.high) + 1))
        return list(self.values)


@dataclasses.dataclass(frozen=True)
class TuningSpec:
    params: tuple[Param, ...]
    metric: str | None  # None: the metric the job's task reports (its TaskSpec's)
    maximize: bool | None = None  # None (no goal given): the goal of the job's task's metric
    max_trials: int = 1
    max_parallel_trials: int = 1
    max_failed_trials: int = 0  # 0: the sweep goes on whatever fails
    early_stopping: bool = False
    algorithm: str = "tpe"  # tpe, random or grid
    best_measurement: bool = True  # False: a trial's value is its last report (Vertex LAST_MEASUREMENT)
    source: str = ""  # "AI Platform" or "Vertex AI", for messages


def _camel(key: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)


def _normalized(value):
    if isinstance(value, dict):
        return {_camel(str(k)): _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def load(path: str, read_text) -> TuningSpec:
    """Reads the spec file (read_text: path -> str, so gs:// works) and parses it."""
    try:
        document = yaml.safe_load(read_text(path))
    except yaml.YAMLError as error:
        raise UserInputError(f"tuning spec {path}: not YAML or JSON: {str(error).splitlines()[0]}") from None
    try:
        return parse(document)
    except UserInputError as error:
        raise UserInputError(f"tuning spec {path}: {error}") from None


def parse(document) -> TuningSpec:
    document = _normalized(document)
    if not isinstance(document, dict):
        raise UserInputError("expected a mapping with trainingInput.hyperparameters (AI Platform) or studySpec "
                             "(Vertex AI)")
    if "studySpec" in document:
        return _vertex(document)
    hyperparameters = document.get("trainingInput", document).get("hyperparameters", document)
    if not isinstance(hyperparameters, dict) or "params" not in hyperparameters:
        raise UserInputError("no trainingInput.hyperparameters.params (AI Platform) or studySpec.parameters "
                             "(Vertex AI) in it")
    return _ai_platform(hyperparameters)


def _ai_platform(spec: dict) -> TuningSpec:
    where = "trainingInput.hyperparameters"
    _known(spec, where, {"goal", "params", "maxTrials", "maxParallelTrials", "maxFailedTrials",
                         "hyperparameterMetricTag", "enableTrialEarlyStopping", "algorithm", "resumePreviousJobId"})
    if "resumePreviousJobId" in spec:
        raise UserInputError(f"{where}.resumePreviousJobId: rerun the same tune command instead (the study in the "
                             "job dir, or --storage, continues)")
    params = []
    for i, raw in enumerate(_list(spec, "params", where)):
        field = f"{where}.params[{i}]"
        _known(raw, field, {"parameterName", "type", "minValue", "maxValue", "scaleType", "categoricalValues",
                            "discreteValues"})
        name = _name(raw.get("parameterName"), f"{field}.parameterName")
        kind = _choice(raw.get("type"), f"{field} ({name}).type", ("DOUBLE", "INTEGER", "CATEGORICAL", "DISCRETE"))
        params.append(_param(name, kind, raw.get("minValue"), raw.get("maxValue"), raw.get("scaleType"),
                             raw.get("categoricalValues") if kind == "CATEGORICAL" else raw.get("discreteValues"),
                             f"{field} ({name})"))
    return _finish(params, spec.get("hyperparameterMetricTag"), spec.get("goal", "GOAL_TYPE_UNSPECIFIED"), f"{where}.goal",
                   _count(spec, "maxTrials", where, 1), _count(spec, "maxParallelTrials", where, 1),
                   _count(spec, "maxFailedTrials", where, 0), _flag(spec, "enableTrialEarlyStopping", where),
                   spec.get("algorithm", "ALGORITHM_UNSPECIFIED"), f"{where}.algorithm", True, "AI Platform")


def _vertex(document: dict) -> TuningSpec:
    study = document["studySpec"]
    if not isinstance(study, dict):
        raise UserInputError("studySpec: expected a mapping")
    _known(study, "studySpec", {"metrics", "parameters", "algorithm", "measurementSelectionType",
                                "medianAutomatedStoppingSpec", "decayCurveStoppingSpec",
                                "convexAutomatedStoppingSpec", "observationNoise"})
    metrics = _list(study, "metrics", "studySpec")
    if len(metrics) != 1 or not isinstance(metrics[0], dict):
        raise UserInputError(f"studySpec.metrics: one metric is supported, {len(metrics)} given")
    params = []
    for i, raw in enumerate(_list(study, "parameters", "studySpec")):
        field = f"studySpec.parameters[{i}]"
        _known(raw, field, {"parameterId", "doubleValueSpec", "integerValueSpec", "categoricalValueSpec",
                            "discreteValueSpec", "scaleType", "conditionalParameterSpecs"})
        name = _name(raw.get("parameterId"), f"{field}.parameterId")
        if raw.get("conditionalParameterSpecs"):
            raise UserInputError(f"{field} ({name}).conditionalParameterSpecs: conditional parameters are not "
                                 "supported; sweep them unconditionally")
        specs = [k for k in ("doubleValueSpec", "integerValueSpec", "categoricalValueSpec", "discreteValueSpec")
                 if k in raw]
        if len(specs) != 1:
            raise UserInputError(f"{field} ({name}): exactly one of doubleValueSpec, integerValueSpec, "
                                 f"categoricalValueSpec, discreteValueSpec is needed, not {specs or 'none'}")
        kind = {"doubleValueSpec": "DOUBLE", "integerValueSpec": "INTEGER", "categoricalValueSpec": "CATEGORICAL",
                "discreteValueSpec": "DISCRETE"}[specs[0]]
        value_spec = raw[specs[0]] or {}
        params.append(_param(name, kind, value_spec.get("minValue"), value_spec.get("maxValue"),
                             raw.get("scaleType"), value_spec.get("values"), f"{field} ({name})"))
    stopping = any(study.get(k) is not None for k in ("medianAutomatedStoppingSpec", "decayCurveStoppingSpec",
                                                       "convexAutomatedStoppingSpec"))
    selection = _choice(study.get("measurementSelectionType", "BEST_MEASUREMENT"),
                        "studySpec.measurementSelectionType",
                        ("BEST_MEASUREMENT", "LAST_MEASUREMENT", "MEASUREMENT_SELECTION_TYPE_UNSPECIFIED"))
    return _finish(params, metrics[0].get("metricId"), metrics[0].get("goal", "GOAL_TYPE_UNSPECIFIED"), "studySpec.metrics[0].goal",
                   _count(document, "maxTrialCount", "", 1), _count(document, "parallelTrialCount", "", 1),
                   _count(document, "maxFailedTrialCount", "", 0), stopping,
                   study.get("algorithm", "ALGORITHM_UNSPECIFIED"), "studySpec.algorithm",
                   selection != "LAST_MEASUREMENT", "Vertex AI")


def _param(name, kind, low, high, scale, values, field) -> Param:
    if kind in ("CATEGORICAL", "DISCRETE"):
        if scale not in (None, "SCALE_TYPE_UNSPECIFIED") and kind == "CATEGORICAL":
            raise UserInputError(f"{field}.scaleType: not for a categorical parameter")
        if not isinstance(values, list) or not values:
            key = "categoricalValues/values" if kind == "CATEGORICAL" else "discreteValues/values"
            raise UserInputError(f"{field}.{key}: a non-empty list is needed")
        if kind == "CATEGORICAL":
            values = [str(v) for v in values]
        else:
            values = sorted(_number(v, f"{field} discrete value") for v in values)
        if len(set(values)) != len(values):
            raise UserInputError(f"{field}: repeated values {values}")
        return Param(name, kind, values=tuple(values))
    low, high = _number(low, f"{field}.minValue"), _number(high, f"{field}.maxValue")
    if kind == "INTEGER" and (low != int(low) or high != int(high)):
        raise UserInputError(f"{field}: an INTEGER parameter needs whole minValue and maxValue, not {low}, {high}")
    if not low < high:
        raise UserInputError(f"{field}: maxValue ({high}) must be greater than minValue ({low})")
    scale = _choice(scale or "UNIT_LINEAR_SCALE", f"{field}.scaleType", (*SCALES, "SCALE_TYPE_UNSPECIFIED"))
    scale = "UNIT_LINEAR_SCALE" if scale == "SCALE_TYPE_UNSPECIFIED" else scale
    if scale != "UNIT_LINEAR_SCALE" and low <= 0:
        raise UserInputError(f"{field}.minValue: {scale} needs minValue > 0, not {low}")
    return Param(name, kind, low, high, scale)


def _finish(params, metric, goal, goal_field, max_trials, parallel, max_failed, early_stopping, algorithm,
            algorithm_field, best_measurement, source) -> TuningSpec:
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise UserInputError(f"parameters: a name appears twice in {names}")
    goal = _choice(goal, goal_field, ("MAXIMIZE", "MINIMIZE", "GOAL_TYPE_UNSPECIFIED"))
    algorithm = ALGORITHMS[_choice(algorithm, algorithm_field, tuple(ALGORITHMS))]
    if algorithm == "grid":
        continuous = [p.name for p in params if p.type == "DOUBLE"]
        if continuous:
            raise UserInputError(f"{algorithm_field}: GRID_SEARCH needs INTEGER, CATEGORICAL or DISCRETE "
                                 f"parameters; {continuous} are DOUBLE")
    if metric is not None and (not isinstance(metric, str) or not metric.strip()):
        raise UserInputError(f"the metric tag must be the name of the metric the job reports, not {metric!r}")
    return TuningSpec(params=tuple(params), metric=metric, maximize=None if goal == "GOAL_TYPE_UNSPECIFIED" else goal == "MAXIMIZE", max_trials=max_trials,
                      max_parallel_trials=min(parallel, max_trials), max_failed_trials=max_failed,
                      early_stopping=early_stopping, algorithm=algorithm, best_measurement=best_measurement,
                      source=source)


def _known(mapping, field: str, keys: set) -> None:
    if not isinstance(mapping, dict):
        raise UserInputError(f"{field}: expected a mapping, not {mapping!r}")
    unknown = sorted(set(mapping) - keys)
    if unknown:
        raise UserInputError(f"{field}: unknown field(s) {unknown}; known: {sorted(keys)}")


def _list(mapping: dict, key: str, where: str) -> list:
    value = mapping.get(key)
    if not isinstance(value, list) or not value:
        raise UserInputError(f"{where + '.' if where else ''}{key}: a non-empty list is needed")
    return value


def _name(value, field: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise UserInputError(f"{field}: a flag name such as initial_learning_rate is needed, not {value!r}")
    return value


def _choice(value, field: str, choices: tuple) -> str:
    if value not in choices:
        raise UserInputError(f"{field}: {value!r} is not one of {', '.join(choices)}")
    return value


def _number(value, field: str) -> float:
    try:
        number = float(value)  # Vertex writes int64 values as strings
    except (TypeError, ValueError):
        raise UserInputError(f"{field}: a number is needed, not {value!r}") from None
    if not math.isfinite(number):
        raise UserInputError(f"{field}: a finite number is needed, not {value!r}")
    return number


def _count(mapping: dict, key: str, where: str, default: int) -> int:
    value = mapping.get(key, default)
    field = f"{where}.{key}" if where else key
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise UserInputError(f"{field}: a whole number is needed, not {value!r}")
    value = int(value)
    if value < (1 if default else 0):
        raise UserInputError(f"{field}: must be at least {1 if default else 0}, not {value}")
    return value


def _flag(mapping: dict, key: str, where: str) -> bool:
    value = mapping.get(key, False)
    if not isinstance(value, bool):
        raise UserInputError(f"{where}.{key}: true or false, not {value!r}")
    return value
