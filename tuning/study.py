"""The Optuna study behind `tune`: its storage (SQLite or a shared RDB), sampler and pruner, the search space it
was started with, and the trials it holds. What is written into the study (flag values, seeds, heartbeats) is
read back by every tuner sharing it."""

import dataclasses
import itertools
import json
import math
import random
import re
import time
import warnings

from core.errors import UserInputError
from tuning.spec import Param, TuningSpec

# A running trial's tuner rewrites this user attribute every few seconds; one older than the grace period is
# an orphan (its tuner died) that any tuner of the study may adopt and rerun.
HEARTBEAT_ATTR = "tuner_heartbeat"
HEARTBEAT_SECONDS = 10
HEARTBEAT_GRACE_SECONDS = 60


def open_study(spec: TuningSpec, storage_url: str, study_name: str, seed: int | None, metric: str):
    """(optuna, study, spec): the study named `study_name` in the storage, created or continued; the spec comes
    back with maxTrials cut to the grid's size for a grid search. A study started with another search space is
    refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = _open_storage(optuna, storage_url)
    sampler, spec = _sampler(optuna, spec, seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, spec.max_trials // 4)), n_warmup_steps=0)
              if spec.early_stopping else optuna.pruners.NopPruner())
    study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner,
                                direction="maximize" if spec.maximize else "minimize", load_if_exists=True)
    recorded = study.user_attrs.get("search_space")
    space = json.loads(json.dumps([dataclasses.asdict(p) for p in spec.params]))
    if recorded is None:
        study.set_user_attr("search_space", space)
        study.set_user_attr("metric", metric)
    elif recorded != space:
        raise UserInputError(f"study {study_name} in {redacted(storage_url)} was run with another search space; "
                             "use another --study_name or --job-dir to start a new sweep")
    return optuna, study, spec


def _sampler(optuna, spec: TuningSpec, seed: int | None):
    if spec.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed), spec
    if spec.algorithm == "grid":
        size = math.prod(len(p.grid()) for p in spec.params)
        if size < spec.max_trials:
            print(f"GRID_SEARCH: the grid has {size} points; the sweep ends after them (maxTrials "
                  f"{spec.max_trials})", flush=True)
            spec = dataclasses.replace(spec, max_trials=size)
        # Each new trial is the next grid point no trial of the study has taken (next_grid_point), enqueued with
        # fixed values. Optuna's GridSampler calls Study.stop() when the grid runs out, which only works inside
        # Study.optimize, not with ask/tell.
        return optuna.samplers.RandomSampler(seed=seed), spec
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, spec.max_trials // 3))), spec


def _open_storage(optuna, url: str):
    """Optuna's RDB storage; tuners started together on an empty database race to create its tables (the loser
    gets a duplicate-key error), so a schema race is retried after a short random pause."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except (IntegrityError, ProgrammingError) as error:
            if attempt == 5 or not any(w in str(error) for w in ("duplicate key", "already exists")):
                raise UserInputError(f"--storage: cannot open {redacted(url)}: "
                                     f"{str(error).strip().splitlines()[0][:300]}") from None
            time.sleep(random.uniform(0.5, 2.0))
        except Exception as error:  # SQLAlchemy/driver errors: a wrong URL, an unreachable server, a bad password
            raise UserInputError(f"--storage: cannot open {redacted(url)}: "
                                 f"{str(error).strip().splitlines()[0][:300]}") from None


def _engine_kwargs(url: str) -> dict:
    # SQLite: concurrent readers (tests, a second tuner) wait for the writer instead of failing at once.
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def redacted(url: str) -> str:
    """A storage URL fit for a log line: its password replaced."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url or "")


def trials(study) -> list:
    """The study's trials, less the surplus ones dropped unrun (see Tuner._start_new)."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]


def state_counts(study) -> dict:
    """Trials by state in the whole study (every tuner sharing it)."""
    states = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    for trial in trials(study):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return states


def best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def heartbeat(study, trial_id: int, at: float | None = None) -> None:
    """Marks a trial as run by a live tuner (`at`=0: released, to be adopted at once by the next tuner)."""
    study._storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time() if at is None else at)


def orphans(study, running_numbers) -> list:
    """Trials left RUNNING by a tuner whose heartbeat stopped (and not run here), with their flag values."""
    now = time.time()
    return [frozen for frozen in study.get_trials(deepcopy=False)
            if frozen.state.name == "RUNNING" and frozen.number + 1 not in running_numbers
            and now - float(frozen.user_attrs.get(HEARTBEAT_ATTR, 0)) >= HEARTBEAT_GRACE_SECONDS
            and "flag_values" in frozen.user_attrs]


def next_grid_point(study, params: tuple[Param, ...]) -> dict | None:
    """The first grid point (in the spec's order) that no trial of the study has taken."""
    taken = {tuple(sorted(t.user_attrs.get("flag_values", t.params).items())) for t in trials(study)}
    for values in itertools.product(*(p.grid() for p in params)):
        point = {p.name: value for p, value in zip(params, values)}
        if tuple(sorted(point.items())) not in taken:
            return point
    return None


def suggest(trial, param: Param):
    """One value of a parameter for a trial, on the spec's scale. A reverse-log parameter is sampled as
    high + low - w with w log-uniform in [low, high] (dense near high), and shown to Optuna as w."""
    if param.type == "CATEGORICAL":
        return trial.suggest_categorical(param.name, list(param.values))
    if param.type == "DISCRETE":
        return _tidy(trial.suggest_categorical(param.name, list(param.values)))
    if param.scale == "UNIT_REVERSE_LOG_SCALE":
        w = trial.suggest_float(f"{param.name}(reverse_log)", param.low, param.high, log=True)
        value = param.high + param.low - w
        return int(min(param.high, max(param.low, round(value)))) if param.type == "INTEGER" else value
    log = param.scale == "UNIT_LOG_SCALE"
    if param.type == "INTEGER":
        return trial.suggest_int(param.name, int(param.low), int(param.high), log=log)
    return trial.suggest_float(param.name, param.low, param.high, log=log)


def _tidy(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value
