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

This module runs the sweep; its parts: spec.py (the tuning spec), study.py (the Optuna study: storage, sampler,
heartbeats, grid points), trial_process.py (a trial as a process), job_dir_files.py (a gs:// job dir's files),
results.py (trials.csv and report.html).
"""

import contextlib
import dataclasses
import hashlib
import os
import signal
import sys
import tempfile
import time

from absl import flags, logging

from core.errors import UserInputError, nearest
from core.seeds import derive_seed, draw_seed
from tuning import job_dir_files, results, study as studies, trial_process
from tuning.spec import TuningSpec, load
from tuning.study import HEARTBEAT_SECONDS, redacted
from tuning.trial_process import RunningTrial

POLL_SECONDS = 1.0
STOP_WAIT_SECONDS = 120


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
        self.spec: TuningSpec = load(fv.config, job_dir_files.read_text)
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
        self.gpus = trial_process.visible_gpus()
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
        if self.fv.storage:
            storage_url = self.fv.storage
        else:
            self.study_file = os.path.join(self.local_dir, "study.db")
            if self.remote:
                job_dir_files.download(f"{self.job_dir}/tuning/study.db", self.study_file)
            storage_url = f"sqlite:///{self.study_file}"
        optuna, study, self.spec = studies.open_study(self.spec, storage_url, self.fv.study_name, self.fv.seed,
                                                      self.metric)
        return optuna, study

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
              f"{redacted(self.fv.storage) if self.fv.storage else self.study_file}", flush=True)
        self.study_seed = self._study_seed()
        failed_out = None
        try:
            while True:
                if self.stop_signal:
                    raise _Stop()
                self._poll(running)
                counts = studies.state_counts(self.study)
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
        best = studies.best_trial(self.study)
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

    def _any_running(self) -> bool:
        """Trials still running anywhere (another tuner's, or orphans this one will adopt once stale)."""
        return any(t.state.name == "RUNNING" for t in studies.trials(self.study))

    def _start_new(self, running: dict) -> bool:
        if len(self.study.get_trials(deepcopy=False)) >= self.spec.max_trials:
            return False
        if self.spec.algorithm == "grid":
            point = studies.next_grid_point(self.study, self.spec.params)
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
        studies.heartbeat(self.study, trial._trial_id)
        values = {p.name: studies.suggest(trial, p) for p in self.spec.params}
        trial.set_user_attr("flag_values", values)
        self._launch(trial, values, running)
        return True

    def _adopt_orphan(self, running: dict) -> bool:
        """A trial left RUNNING by a tuner that stopped (or died): rerun it under its own id and parameters,
        so the job resumes from its own checkpoints."""
        for frozen in studies.orphans(self.study, running):
            studies.heartbeat(self.study, frozen._trial_id)
            trial = self.optuna.Trial(self.study, frozen._trial_id)
            print(f"trial {frozen.number + 1}: its tuner stopped while it ran; running it again, from its "
                  "checkpoints", flush=True)
            self._launch(trial, frozen.user_attrs["flag_values"], running,
                         reported=set(int(s) for s in frozen.intermediate_values))
            return True
        return False

    def _launch(self, trial, values: dict, running: dict, reported: set | None = None) -> None:
        number = trial.number + 1
        seed = self.trial_seed(number)
        trial.set_user_attr("seed", seed)
        item = trial_process.start(trial, number, values, self._trial_argv(values, seed),
                                   os.path.join(self.local_dir, f"trial_{number}"), self.gpus,
                                   resumed=reported is not None)
        item.reported_steps.update(reported or ())
        running[number] = item
        print(f"trial {number}: started {_describe(values)}", flush=True)

    def _poll(self, running: dict) -> None:
        now = time.time()
        for number, item in list(running.items()):
            self._report_new_values(item)
            if now - item.last_heartbeat >= HEARTBEAT_SECONDS:
                studies.heartbeat(self.study, item.trial._trial_id)
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
        for step, value in item.new_values(self.metric):
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
        item.trial.set_user_attr(studies.HEARTBEAT_ATTR, 0)
        if item.stop_reason == "pruned":
            self.study.tell(item.trial, state=self.optuna.trial.TrialState.PRUNED)
            outcome = f"pruned at step {max(values) if values else 0} (below the median of earlier trials)"
        elif code == 0 and best_step is not None:
            self.study.tell(item.trial, values[best_step])
            outcome = f"{self.metric}={values[best_step]:.4f} at step {best_step}"
        else:
            self.study.tell(item.trial, state=self.optuna.trial.TrialState.FAIL)
            outcome = f"FAILED (exit {code}): {trial_process.last_error(item.log_file)}"
        best = studies.best_trial(self.study)
        so_far = (f"; best so far: trial {best.number + 1}, {self.metric}={best.value:.4f}" if best else "")
        print(f"trial {item.number}: {outcome} in {time.time() - item.started:.0f} s {_describe(item.values)}{so_far}",
              flush=True)

    def _stop_all(self, running: dict) -> None:
        """Stops the running trials with SIGTERM (each saves a checkpoint) and leaves them RUNNING in the study,
        released, so the next tuner of the study reruns them from there."""
        trial_process.stop(list(running.values()), STOP_WAIT_SECONDS)
        for item in running.values():
            self._report_new_values(item)
            studies.heartbeat(self.study, item.trial._trial_id, at=0)
        if self.remote:
            job_dir_files.upload_state(self.local_dir, self.job_dir, with_study=not self.fv.storage)

    def _write_results(self) -> None:
        results.write(studies.trials(self.study), self.spec, self.metric, self.job_dir, self.local_dir,
                      self.fv.study_name)
        if self.remote:
            job_dir_files.upload_state(self.local_dir, self.job_dir, with_study=not self.fv.storage)


def _flag_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _describe(values: dict) -> str:
    return "{" + ", ".join(f"{k}={_flag_text(v) if not isinstance(v, float) else f'{v:.4g}'}"
                           for k, v in values.items()) + "}"


@contextlib.contextmanager
def _quiet_logs():
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
