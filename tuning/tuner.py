"""`entrypoint.py tune`: runs an AI Platform / Vertex AI tuning spec anywhere, on Optuna.

    python entrypoint.py tune --config=SPEC.yaml --job-dir=DIR [--storage=URL] [--parallel_trials=N] \\
        -- <training flags>

Each trial is the normal job as a subprocess: the training flags plus the swept ones, trial id <n> and its
own hypertune file (as AI Platform gives them, platforms/google_cloud.py), in the shared job dir, so its model lands in <job-dir>/model/trial_<n> as on AI
Platform. The hypertune lines a trial writes at each evaluation are its intermediate values (the median
pruner stops a lagging trial with SIGTERM, so it saves and exits cleanly). The study lives in SQLite under
<job-dir>/tuning (a gs:// job dir: a local copy, uploaded after each trial) or in --storage (PostgreSQL: tuners
on several machines share it). Rerunning the same command continues the study: finished trials are not
rerun, and a trial that was running when its tuner stopped is rerun under its own id, so it resumes from its
own checkpoints.
"""

import contextlib
import ctypes
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings

from absl import flags, logging

from core.errors import UserInputError, nearest
from core.seeds import derive_seed, draw_seed
from platforms import google_cloud
from tuning import results
from tuning.spec import Param, TuningSpec, load

# A running trial's tuner rewrites this user attribute every few seconds; one older than the grace period is
# an orphan (its tuner died) that any tuner of the study may adopt and rerun.
HEARTBEAT_ATTR = "tuner_heartbeat"
HEARTBEAT_SECONDS = 10
HEARTBEAT_GRACE_SECONDS = 60
POLL_SECONDS = 1.0
STOP_WAIT_SECONDS = 120
ENTRYPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "entrypoint.py")


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("config", None, "The tuning spec: AI Platform's trainingInput.hyperparameters or Vertex "
                        "AI's studySpec (YAML or JSON; local or gs://). Required.", flag_values=fv)
    flags.DEFINE_string("job_dir", None, "The job dir every trial shares (local or gs://). Required.",
                        flag_values=fv)
    flags.DEFINE_string("storage", None, "Optuna storage URL shared by several tuners, e.g. postgresql://"
                        "user:password@host/db. Default: SQLite in <job-dir>/tuning.", flag_values=fv)
    flags.DEFINE_integer("parallel_trials", None, "Trials at once; default the spec's maxParallelTrials / "
                         "parallelTrialCount.", flag_values=fv)
    flags.DEFINE_string("study_name", "tuning", "Name of the study in the storage.", flag_values=fv)
    flags.DEFINE_integer("seed", None, "Seed of the study: the sampler's, and each trial's --seed is derived from it "
                         "and the trial's number (recorded in trials.csv). Default: drawn once and kept with the "
                         "study. A --seed among the training flags gives every trial that same seed instead.",
                         flag_values=fv)


@dataclasses.dataclass
class RunningTrial:
    trial: object  # optuna.Trial
    number: int  # the trial id the job sees; Optuna's number + 1
    values: dict  # flag -> value
    process: subprocess.Popen
    metrics_file: str
    log_file: str
    started: float
    reported_steps: set = dataclasses.field(default_factory=set)
    stop_reason: str | None = None  # "pruned" or "stopped" once the tuner sent SIGTERM
    last_heartbeat: float = 0.0


def main(argv: list[str]) -> int:
    fv = flags.FlagValues()
    define_flags(fv)
    argv = [arg.replace("--job-dir", "--job_dir", 1) if arg.startswith("--job-dir") else arg for arg in argv]
    if "--" in argv:
        cut = argv.index("--")
        own, training = argv[:cut], argv[cut + 1:]
    else:
        own, training = argv, []
    if any(arg in ("-h", "--help", "--helpfull", "help") for arg in own):
        print(__doc__)
        print(fv.get_help(include_special_flags=False))
        return 0
    try:
        fv(["tune", *own])
        for name in ("config", "job_dir"):
            if not fv[name].value:
                raise UserInputError(f"tune needs --{name}")
        return Tuner(fv, training).run()
    except (flags.Error, UserInputError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2


class _Stop(Exception):
    pass


class Tuner:
    def __init__(self, fv: flags.FlagValues, training_flags: list[str]):
        self.fv = fv
        self.job_dir = fv.job_dir.rstrip("/")
        self.remote = "://" in self.job_dir
        self.spec: TuningSpec = load(fv.config, _read_text)
        self.training_flags = training_flags
        self.parallel = fv.parallel_trials or self.spec.max_parallel_trials
        if self.parallel < 1:
            raise UserInputError(f"--parallel_trials={self.parallel} must be at least 1")
        self.fixed_trial_seed: int | None = None
        self.metric, self.fixed_trial_seed = self._check_flags()
        # Local state: the trials' hypertune files and logs (and the SQLite study of a gs:// job dir).
        self.local_dir = (os.path.join(self.job_dir, "tuning") if not self.remote else os.path.join(
            tempfile.gettempdir(), "tuning-" + hashlib.sha1(self.job_dir.encode()).hexdigest()[:12]))
        os.makedirs(self.local_dir, exist_ok=True)
        self.gpus = _visible_gpus()
        self.stop_signal = None

    # -- set-up ---------------------------------------------------------------------------------------------

    def _check_flags(self) -> tuple[str, int | None]:
        """The swept names must be training flags not also fixed on the command line; the job's own parse
        (routing, data, flags) runs once here, with the first value of each parameter, before any trial.
        Returns the metric, and the seed the training flags fix for every trial (None: each trial's own)."""
        from algorithms import registry

        known = set(registry.new_flag_values())
        given = {arg[2:].split("=", 1)[0].replace("-", "_") for arg in self.training_flags if arg.startswith("--")}
        for param in self.spec.params:
            if param.name not in known:
                raise UserInputError(f"tuning spec parameter {param.name}: not a flag of this trainer"
                                     f"{nearest(param.name, known)} (see entrypoint.py --help)")
            if param.name in given:
                raise UserInputError(f"--{param.name} is both swept by the tuning spec and fixed after --; "
                                     "drop one")
        if "job_dir" in given or "model_dir" in given:
            raise UserInputError("give --job-dir to tune itself (before --), not to the training flags")
        sample = {p.name: (p.values[0] if p.values else p.low if p.type == "DOUBLE" else int(p.low))
                  for p in self.spec.params}
        with _quiet_logs():
            config = registry.parse_job_config(self._trial_argv(sample))
        task = registry.TASK_SPECS[config.task]
        if self.spec.metric and self.spec.metric != task.metric:
            raise UserInputError(f"the tuning spec's metric tag is {self.spec.metric}, but a {config.task} job "
                                 f"reports {task.metric}")
        if self.spec.maximize is None:  # no goal in the spec: the task's metric says which way is better
            self.spec = dataclasses.replace(self.spec, maximize=task.maximize)
        return task.metric, config.seed

    def _trial_argv(self, values: dict, seed: int | None = None) -> list[str]:
        seeds = [f"--seed={seed}"] if seed is not None and self.fixed_trial_seed is None else []
        return [*self.training_flags, f"--job-dir={self.job_dir}", *seeds,
                *(f"--{name}={_flag_text(value)}" for name, value in values.items())]

    def _study_seed(self) -> int:
        """--seed, else the seed this study recorded when it started, else a new one (recorded)."""
        recorded = self.study.user_attrs.get("study_seed")
        seed, how = self.fv.seed, "from --seed"
        if seed is None:
            seed, how = (recorded, "recorded with the study") if recorded is not None else (draw_seed(), "drawn")
        if recorded is None:
            self.study.set_user_attr("study_seed", seed)
            if self.fv.seed is None:  # tuners starting one shared study together: the last one's draw holds
                seed = self.study.user_attrs.get("study_seed", seed)
        elif recorded != seed:
            print(f"tuning: --seed={seed} differs from the seed the study started with ({recorded}): new trials "
                  "derive their seeds from it", flush=True)
        print(f"tuning: study seed {seed} ({how}); trial n trains with --seed=" + (
            f"{self.fixed_trial_seed} (from the training flags, every trial)" if self.fixed_trial_seed is not None
            else "derived from the study seed and n (trials.csv)"), flush=True)
        return seed

    def trial_seed(self, number: int) -> int:
        if self.fixed_trial_seed is not None:
            return self.fixed_trial_seed
        return derive_seed(self.study_seed, number)

    def _open_study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if self.fv.storage:
            storage_url = self.fv.storage
        else:
            self.study_file = os.path.join(self.local_dir, "study.db")
            if self.remote:
                _download(f"{self.job_dir}/tuning/study.db", self.study_file)
            storage_url = f"sqlite:///{self.study_file}"
        storage = _open_storage(optuna, storage_url)
        sampler = self._sampler(optuna)
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, self.spec.max_trials // 4)),
                                              n_warmup_steps=0) if self.spec.early_stopping
                  else optuna.pruners.NopPruner())
        study = optuna.create_study(storage=storage, study_name=self.fv.study_name, sampler=sampler, pruner=pruner,
                                    direction="maximize" if self.spec.maximize else "minimize",
                                    load_if_exists=True)
        recorded = study.user_attrs.get("search_space")
        space = [dataclasses.asdict(p) for p in self.spec.params]
        if recorded is None:
            study.set_user_attr("search_space", json.loads(json.dumps(space)))
            study.set_user_attr("metric", self.metric)
        elif recorded != json.loads(json.dumps(space)):
            raise UserInputError(f"study {self.fv.study_name} in {_redacted(storage_url)} was run with another "
                                 "search space; use another --study_name or --job-dir to start a new sweep")
        return optuna, study

    def _sampler(self, optuna):
        if self.spec.algorithm == "random":
            return optuna.samplers.RandomSampler(seed=self.fv.seed)
        if self.spec.algorithm == "grid":
            space = {p.name: p.grid() for p in self.spec.params}
            size = math.prod(len(v) for v in space.values())
            if size < self.spec.max_trials:
                print(f"GRID_SEARCH: the grid has {size} points; the sweep ends after them (maxTrials "
                      f"{self.spec.max_trials})", flush=True)
                self.spec = dataclasses.replace(self.spec, max_trials=size)
            # Each new trial is the next grid point no trial of the study has taken (_next_grid_point), enqueued
            # with fixed values. Optuna's GridSampler calls Study.stop() when the grid runs out, which only works
            # inside Study.optimize, not with ask/tell.
            return optuna.samplers.RandomSampler(seed=self.fv.seed)
        return optuna.samplers.TPESampler(seed=self.fv.seed, n_startup_trials=min(10, max(2, self.spec.max_trials // 3)))

    # -- the sweep ------------------------------------------------------------------------------------------

    def run(self) -> int:
        optuna, study = self._open_study()
        self.optuna, self.study = optuna, study
        running: dict[int, RunningTrial] = {}
        previous = {signal.SIGTERM: signal.getsignal(signal.SIGTERM), signal.SIGINT: signal.getsignal(signal.SIGINT)}
        for signum in previous:
            signal.signal(signum, self._on_signal)
        print(f"tuning: {self.spec.source} spec, {len(self.spec.params)} parameter(s), {self.spec.max_trials} trials, "
              f"{self.parallel} at once, {self.spec.algorithm.upper()} sampler, metric {self.metric} "
              f"({'max' if self.spec.maximize else 'min'}imize), early stopping "
              f"{'on' if self.spec.early_stopping else 'off'}; study {self.fv.study_name} in "
              f"{_redacted(self.fv.storage) if self.fv.storage else self.study_file}", flush=True)
        self.study_seed = self._study_seed()
        failed_out = None
        try:
            while True:
                if self.stop_signal:
                    raise _Stop()
                self._poll(running)
                counts = self._counts()
                if self.spec.max_failed_trials and counts["FAIL"] >= self.spec.max_failed_trials and not failed_out:
                    failed_out = (f"{counts['FAIL']} trials failed (maxFailedTrials {self.spec.max_failed_trials}): "
                                  "the sweep stops; each failed trial's log is in "
                                  f"{self.local_dir}/trial_<n>/log.txt")
                if failed_out:
                    if not running:
                        break
                else:
                    while len(running) < self.parallel and not self.stop_signal:
                        if not (self._adopt_orphan(running) or self._start_new(running)):
                            break
                    if not running and not self._any_running():
                        break
                time.sleep(POLL_SECONDS)
        except _Stop:
            self._stop_all(running)
            self._write_results()
            print(f"STOPPED by signal {self.stop_signal}: {len(running)} running trial(s) saved their checkpoints; "
                  "rerun the same command to continue the sweep", file=sys.stderr)
            return 128 + self.stop_signal
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        # Once more at the end: a tuner that ran no trial itself (another tuner of a shared study ran them all)
        # still leaves the results in its job dir.
        self._write_results()
        best = _best(self.study)
        if failed_out:
            print(f"ERROR: {failed_out}", file=sys.stderr)
            return 1
        if best is None:
            print(f"ERROR: no trial finished with a {self.metric} value; see the trials' logs in "
                  f"{self.local_dir}", file=sys.stderr)
            return 1
        print(f"best trial {best.number + 1}: {self.metric}={best.value:.4f} at step "
              f"{best.user_attrs.get('best_step')}; model {self.job_dir}/model/trial_{best.number + 1}", flush=True)
        return 0

    def _on_signal(self, signum, frame) -> None:
        # Only noted here; the loop stops between two polls, never in the middle of a write to the study.
        if self.stop_signal is None:
            self.stop_signal = signum

    def _counts(self) -> dict:
        """Trials by state in the whole study (every tuner sharing it)."""
        states = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
        for trial in self._trials():
            states[trial.state.name] = states.get(trial.state.name, 0) + 1
        return states

    def _trials(self) -> list:
        return [t for t in self.study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]

    def _any_running(self) -> bool:
        """Trials still running anywhere (another tuner's, or orphans this one will adopt once stale)."""
        return any(t.state.name == "RUNNING" for t in self._trials())

    def _start_new(self, running: dict) -> bool:
        if len(self.study.get_trials(deepcopy=False)) >= self.spec.max_trials:
            return False
        if self.spec.algorithm == "grid":
            point = self._next_grid_point()
            if point is None:
                return False
            self.study.enqueue_trial(point)
        trial = self.study.ask()
        if trial.number >= self.spec.max_trials:
            # Another tuner of the study asked at the same moment: Optuna numbers trials in the order they were
            # created, so the one numbered past maxTrials is the surplus, and is dropped unrun.
            trial.set_user_attr("surplus", True)
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            return False
        self._heartbeat(trial._trial_id)
        values = self._suggest(trial)
        self._launch(trial, values, running)
        return True

    def _next_grid_point(self) -> dict | None:
        taken = {tuple(sorted(t.user_attrs.get("flag_values", t.params).items())) for t in self._trials()}
        for values in itertools.product(*(p.grid() for p in self.spec.params)):
            point = {p.name: value for p, value in zip(self.spec.params, values)}
            if tuple(sorted(point.items())) not in taken:
                return point
        return None

    def _adopt_orphan(self, running: dict) -> bool:
        """A trial left RUNNING by a tuner that stopped (or died): rerun it under its own id and parameters,
        so the job resumes from its own checkpoints."""
        now = time.time()
        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.state.name != "RUNNING" or frozen.number + 1 in running:
                continue
            if now - float(frozen.user_attrs.get(HEARTBEAT_ATTR, 0)) < HEARTBEAT_GRACE_SECONDS:
                continue
            if "flag_values" not in frozen.user_attrs:
                continue
            self._heartbeat(frozen._trial_id)
            trial = self.optuna.Trial(self.study, frozen._trial_id)
            print(f"trial {frozen.number + 1}: its tuner stopped while it ran; running it again, from its "
                  "checkpoints", flush=True)
            self._launch(trial, frozen.user_attrs["flag_values"], running,
                         reported=set(int(s) for s in frozen.intermediate_values))
            return True
        return False

    def _suggest(self, trial) -> dict:
        values = {p.name: suggest(trial, p) for p in self.spec.params}
        trial.set_user_attr("flag_values", values)
        return values

    def _launch(self, trial, values: dict, running: dict, reported: set | None = None) -> None:
        number = trial.number + 1
        trial_dir = os.path.join(self.local_dir, f"trial_{number}")
        os.makedirs(trial_dir, exist_ok=True)
        metrics_file = os.path.join(trial_dir, "hypertune.metrics")
        if reported is None and os.path.exists(metrics_file):
            os.remove(metrics_file)
        env = google_cloud.trial_environment(dict(os.environ), number, metrics_file)
        if len(self.gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[(number - 1) % len(self.gpus)]
        log_file = os.path.join(trial_dir, "log.txt")
        with open(log_file, "a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} trial {number}: {json.dumps(values)}\n")
            log.flush()
            seed = self.trial_seed(number)
            trial.set_user_attr("seed", seed)
            process = subprocess.Popen([sys.executable, ENTRYPOINT, *self._trial_argv(values, seed)], stdout=log,
                                       stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
                                       start_new_session=True)
        running[number] = RunningTrial(trial, number, values, process, metrics_file, log_file, time.time(),
                                       reported_steps=set(reported or ()))
        print(f"trial {number}: started {_describe(values)}", flush=True)

    def _poll(self, running: dict) -> None:
        now = time.time()
        for number, item in list(running.items()):
            self._report_new_values(item)
            if now - item.last_heartbeat >= HEARTBEAT_SECONDS:
                self._heartbeat(item.trial._trial_id)
                item.last_heartbeat = now
            code = item.process.poll()
            if code is None:
                if item.stop_reason is None and item.reported_steps and item.trial.should_prune():
                    item.stop_reason = "pruned"
                    item.process.send_signal(signal.SIGTERM)
                continue
            self._report_new_values(item)
            self._finish(item, code)
            del running[number]
            self._write_results()  # trials.csv and report.html follow the sweep (uploaded for a gs:// job dir)

    def _report_new_values(self, item: RunningTrial) -> None:
        for step, value in _read_metrics(item.metrics_file, self.metric):
            if step not in item.reported_steps:
                item.reported_steps.add(step)
                item.trial.report(value, step)

    def _finish(self, item: RunningTrial, code: int) -> None:
        frozen = self.study._storage.get_trial(item.trial._trial_id)
        values = dict(frozen.intermediate_values)  # everything reported, by this process or an earlier one
        best_step = None
        if values:
            pick = max if self.spec.maximize else min
            best_step = (pick(values, key=values.get) if self.spec.best_measurement else max(values))
        item.trial.set_user_attr("duration_s", round(time.time() - item.started, 1)
                                 + float(frozen.user_attrs.get("duration_s", 0)))
        item.trial.set_user_attr("best_step", best_step)
        item.trial.set_user_attr(HEARTBEAT_ATTR, 0)
        if item.stop_reason == "pruned":
            self.study.tell(item.trial, state=self.optuna.trial.TrialState.PRUNED)
            outcome = f"pruned at step {max(values) if values else 0} (below the median of earlier trials)"
        elif code == 0 and best_step is not None:
            self.study.tell(item.trial, values[best_step])
            outcome = f"{self.metric}={values[best_step]:.4f} at step {best_step}"
        else:
            self.study.tell(item.trial, state=self.optuna.trial.TrialState.FAIL)
            outcome = f"FAILED (exit {code}): {_last_error(item.log_file)}"
        best = _best(self.study)
        so_far = (f"; best so far: trial {best.number + 1}, {self.metric}={best.value:.4f}" if best else "")
        print(f"trial {item.number}: {outcome} in {time.time() - item.started:.0f} s {_describe(item.values)}{so_far}",
              flush=True)

    def _stop_all(self, running: dict) -> None:
        """Stops the running trials with SIGTERM (each saves a checkpoint) and leaves them RUNNING in the study,
        released, so the next tuner of the study reruns them from there."""
        for item in running.values():
            if item.process.poll() is None:
                item.process.send_signal(signal.SIGTERM)
        deadline = time.time() + STOP_WAIT_SECONDS
        for item in running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                item.process.wait(timeout=max(1.0, deadline - time.time()))
            if item.process.poll() is None:
                item.process.kill()
            self._report_new_values(item)
            self.study._storage.set_trial_user_attr(item.trial._trial_id, HEARTBEAT_ATTR, 0)
        if self.remote:
            self._upload_state()

    def _heartbeat(self, trial_id: int) -> None:
        self.study._storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _write_results(self) -> None:
        results.write(self._trials(), self.spec, self.metric, self.job_dir, self.local_dir, self.fv.study_name)
        if self.remote:
            self._upload_state()

    def _upload_state(self) -> None:
        import tensorflow as tf

        target = f"{self.job_dir}/tuning"
        tf.io.gfile.makedirs(target)
        names = ["trials.csv", "report.html", *([] if self.fv.storage else ["study.db"])]
        names += [f"{d}/log.txt" for d in sorted(os.listdir(self.local_dir)) if d.startswith("trial_")]
        for name in names:
            source = os.path.join(self.local_dir, name)
            if os.path.exists(source):
                tf.io.gfile.makedirs(os.path.dirname(f"{target}/{name}"))
                tf.io.gfile.copy(source, f"{target}/{name}", overwrite=True)


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


def _flag_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _describe(values: dict) -> str:
    return "{" + ", ".join(f"{k}={_flag_text(v) if not isinstance(v, float) else f'{v:.4g}'}"
                           for k, v in values.items()) + "}"


def _best(study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _read_metrics(path: str, metric: str) -> list[tuple[int, float]]:
    """(global_step, value) of each line of a hypertune file (one JSON object per line, values as strings)."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
            found.append((int(float(record["global_step"])), float(record[metric])))
        except (ValueError, KeyError, TypeError):
            continue  # a line being rewritten, or another metric
    return [(step, value) for step, value in found if math.isfinite(value)]


def _last_error(log_file: str) -> str:
    try:
        with open(log_file, errors="replace") as handle:
            lines = [line.strip() for line in handle.read().splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith(("ERROR:", "STOPPED:")) or " ERROR " in line]
    return (errors or lines or ["no output"])[-1][:300] + f" (log: {log_file})"


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


def _die_with_parent() -> None:
    """In the trial's process: SIGTERM when the tuner dies, however it dies (Linux), so an orphaned trial
    saves and stops instead of running on beside the trial the next tuner starts."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _open_storage(optuna, url: str):
    """Optuna's RDB storage; tuners started together on an empty database race to create its tables (the loser
    gets a duplicate-key error), so a schema race is retried after a short random pause."""
    import random

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except (IntegrityError, ProgrammingError) as error:
            if attempt == 5 or not any(w in str(error) for w in ("duplicate key", "already exists")):
                raise UserInputError(f"--storage: cannot open {_redacted(url)}: "
                                     f"{str(error).strip().splitlines()[0][:300]}") from None
            time.sleep(random.uniform(0.5, 2.0))
        except Exception as error:  # SQLAlchemy/driver errors: a wrong URL, an unreachable server, a bad password
            raise UserInputError(f"--storage: cannot open {_redacted(url)}: "
                                 f"{str(error).strip().splitlines()[0][:300]}") from None


def _engine_kwargs(url: str) -> dict:
    # SQLite: concurrent readers (tests, a second tuner) wait for the writer instead of failing at once.
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def _redacted(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url or "")


def _read_text(path: str) -> str:
    if "://" in path:
        import tensorflow as tf

        try:
            with tf.io.gfile.GFile(path) as handle:
                return handle.read()
        except tf.errors.OpError as error:
            raise UserInputError(f"cannot read the tuning spec {path}: {error.message}") from None
    try:
        with open(path) as handle:
            return handle.read()
    except OSError as error:
        raise UserInputError(f"cannot read the tuning spec {path}: {error.strerror}") from None


def _download(remote: str, local: str) -> None:
    import tensorflow as tf

    if tf.io.gfile.exists(remote):
        tf.io.gfile.copy(remote, local, overwrite=True)


@contextlib.contextmanager
def _quiet_logs():
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
