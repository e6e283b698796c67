"""`entrypoint.py tune`: real sweeps of tiny jobs on real digit scans, driven by the AI Platform / Vertex AI
spec formats, through SQLite in the job dir and through a real PostgreSQL server."""

import csv
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pytest
import yaml

from core.errors import UserInputError
from core.seeds import derive_seed
from tests.conftest import REPO, refusing_address
from tuning import spec as tuning_spec
from tuning.study import suggest

# No --seed: each trial gets its own, derived from the study seed and its number. Without op determinism the
# seeded trials run oneDNN's faster CPU kernels (conftest.FAST_FLAGS).
TINY = ["--num_classes=10", "--model_type=resnet-18", "--image_size=32", "--train_batch_size=32",
        "--log_every_steps=10", "--deterministic_ops=false"]


def _ai_platform(params, **settings) -> dict:
    return {"trainingInput": {"scaleTier": "BASIC_GPU", "hyperparameters": {
        "goal": "MAXIMIZE", "hyperparameterMetricTag": "top_1_accuracy", "params": params, **settings}}}


LEARNING_RATE_AND_OPTIMIZER = [
    {"parameterName": "initial_learning_rate", "type": "DOUBLE", "minValue": 0.0005, "maxValue": 0.01,
     "scaleType": "UNIT_LOG_SCALE"},
    {"parameterName": "optimizer_type", "type": "CATEGORICAL", "categoricalValues": ["adam", "rmsprop"]}]


def _tune(tmp_path, spec: dict, digits, training_flags, *tune_flags, name="spec.yaml", timeout=600, popen=False):
    spec_file = tmp_path / name
    spec_file.write_text(yaml.safe_dump(spec))
    command = [sys.executable, os.path.join(REPO, "entrypoint.py"), "tune", f"--config={spec_file}",
               f"--job-dir={tmp_path / 'job'}", *tune_flags, "--",
               f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
               *TINY, *training_flags]
    if popen:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _trials_csv(job_dir) -> list[dict]:
    with open(os.path.join(job_dir, "tuning", "trials.csv")) as handle:
        return list(csv.DictReader(handle))


def _hypertune_values(job_dir, trial: int) -> list[float]:
    with open(os.path.join(job_dir, "tuning", f"trial_{trial}", "hypertune.metrics")) as handle:
        return [float(json.loads(line)["top_1_accuracy"]) for line in handle if line.strip()]


def test_a_two_parameter_sweep_runs_three_trials_two_at_once_and_names_the_best(digits, tmp_path):
    spec = _ai_platform(LEARNING_RATE_AND_OPTIMIZER, maxTrials=3, maxParallelTrials=2)
    result = _tune(tmp_path, spec, digits, ["--max_steps=20", "--train_steps_per_eval=20"], "--seed=3")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    job = tmp_path / "job"
    lines = result.stdout.splitlines()
    # Two at once: trial 2 started before trial 1 finished.
    started_2 = next(i for i, line in enumerate(lines) if line.startswith("trial 2: started"))
    finished_1 = next(i for i, line in enumerate(lines) if line.startswith("trial 1: top_1_accuracy="))
    assert started_2 < finished_1, result.stdout
    for trial in (1, 2, 3):
        assert (job / "model" / f"trial_{trial}" / "saved_model.pb").exists()
    rows = _trials_csv(job)
    assert [(r["trial"], r["state"]) for r in rows] == [("1", "COMPLETE"), ("2", "COMPLETE"), ("3", "COMPLETE")]
    assert all(0.0005 <= float(r["initial_learning_rate"]) <= 0.01 and r["optimizer_type"] in ("adam", "rmsprop")
               for r in rows)
    # Each trial trained with a seed derived from the study seed (tune --seed=3) and its number, recorded.
    assert "tuning: study seed 3 (from --seed)" in result.stdout
    assert [int(r["seed"]) for r in rows] == [derive_seed(3, trial) for trial in (1, 2, 3)]
    for trial in (1, 2, 3):
        log = (job / "tuning" / f"trial_{trial}" / "log.txt").read_text()
        assert f"seed {derive_seed(3, trial)} (from --seed), op determinism off, oneDNN's CPU kernels" in log
    # The best named is the highest value any trial wrote to its hypertune file.
    best_per_trial = {t: max(_hypertune_values(job, t)) for t in (1, 2, 3)}
    best_trial = max(best_per_trial, key=best_per_trial.get)
    assert lines[-1] == (f"best trial {best_trial}: top_1_accuracy={best_per_trial[best_trial]:.4f} at step "
                         f"{rows[best_trial - 1]['step']}; model {job}/model/trial_{best_trial}")
    assert [float(r["top_1_accuracy"]) for r in rows] == pytest.approx([best_per_trial[t] for t in (1, 2, 3)])
    assert sum(1 for line in lines if "best so far" in line) == 3, "one progress line per finished trial"
    report = (job / "tuning" / "report.html").read_text()
    assert "Optimisation history" in report and "Parallel coordinates" in report and report.count("<tr>") == 4


def test_a_diverging_learning_rate_fails_its_trial_and_is_never_the_best(digits, tmp_path):
    """GRID_SEARCH over two learning rates, one absurd: that trial diverges and fails; the other is the best."""
    spec = {"studySpec": {"metrics": [{"metricId": "top_1_accuracy", "goal": "MAXIMIZE"}], "algorithm": "GRID_SEARCH",
                          "parameters": [{"parameterId": "initial_learning_rate",
                                          "discreteValueSpec": {"values": [0.002, 1.0e12]}}]},
            "maxTrialCount": 4, "parallelTrialCount": 1}
    result = _tune(tmp_path, spec, digits, ["--max_steps=20", "--train_steps_per_eval=10", "--optimizer_type=momentum",
                                            "--seed", "1"])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "the grid has 2 points" in result.stdout
    rows = {float(r["initial_learning_rate"]): r for r in _trials_csv(tmp_path / "job")}
    # A --seed among the training flags (either spelling): every trial trains with it (the study seed was drawn).
    assert re.search(r"tuning: study seed \d+ \(drawn\); trial n trains with --seed=1 \(from the training flags", result.stdout)
    assert [r["seed"] for r in rows.values()] == ["1", "1"]
    assert rows[1.0e12]["state"] == "FAIL" and rows[0.002]["state"] == "COMPLETE"
    diverged = next(line for line in result.stdout.splitlines() if "FAILED" in line)
    assert "diverged" in diverged, diverged
    assert result.stdout.splitlines()[-1].startswith(f"best trial {rows[0.002]['trial']}: top_1_accuracy=")


def test_max_failed_trials_ends_the_sweep_with_one_line(digits, tmp_path):
    spec = _ai_platform([{"parameterName": "initial_learning_rate", "type": "DISCRETE",
                          "discreteValues": [1.0e12, 1.0e13]}], maxTrials=2, maxFailedTrials=1, algorithm="GRID_SEARCH")
    result = _tune(tmp_path, spec, digits, ["--max_steps=20", "--train_steps_per_eval=10", "--optimizer_type=momentum"])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "ERROR: 1 trials failed (maxFailedTrials 1): the sweep stops"), result.stderr[-2000:]
    assert [r["state"] for r in _trials_csv(tmp_path / "job")] == ["FAIL"], "the second trial never started"


def test_a_stopped_tuner_reruns_to_exactly_max_trials_resuming_the_interrupted_trial(digits, tmp_path):
    spec = _ai_platform(LEARNING_RATE_AND_OPTIMIZER, maxTrials=2, maxParallelTrials=1)
    training = ["--max_steps=40", "--train_steps_per_eval=20"]
    tuner = _tune(tmp_path, spec, digits, training, popen=True)
    metrics = tmp_path / "job" / "tuning" / "trial_2" / "hypertune.metrics"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
        assert tuner.poll() is None, tuner.communicate()
        time.sleep(0.5)
    tuner.send_signal(signal.SIGTERM)  # trial 2 has evaluated once (so checkpointed) and is still training
    out, err = tuner.communicate(timeout=180)
    assert tuner.returncode == 128 + signal.SIGTERM, out + err[-2000:]
    assert "STOPPED by signal" in err and "rerun the same command" in err
    assert [r["state"] for r in _trials_csv(tmp_path / "job")] == ["COMPLETE", "RUNNING"]

    rerun = _tune(tmp_path, spec, digits, training)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-3000:]
    assert "trial 2: its tuner stopped while it ran; running it again, from its checkpoints" in rerun.stdout
    assert "trial 1: started" not in rerun.stdout, "a finished trial is not rerun"
    rows = _trials_csv(tmp_path / "job")
    assert [(r["trial"], r["state"]) for r in rows] == [("1", "COMPLETE"), ("2", "COMPLETE")]
    log = (tmp_path / "job" / "tuning" / "trial_2" / "log.txt").read_text()
    assert "resumed from" in log and log.count("--- ") == 2, "trial 2 ran twice, the second time from a checkpoint"
    assert rows[1]["evaluations"] == "2", "the evaluations of both runs of trial 2 count"
    assert sorted(os.listdir(tmp_path / "job" / "model")) == ["trial_1", "trial_2"]


# -- the spec --------------------------------------------------------------------------------------------------

VERTEX_FORM = {
    "studySpec": {"metrics": [{"metricId": "top_1_accuracy", "goal": "MAXIMIZE"}],
                  "parameters": [{"parameterId": "initial_learning_rate", "scaleType": "UNIT_LOG_SCALE",
                                  "doubleValueSpec": {"minValue": 0.0005, "maxValue": 0.01}},
                                 {"parameterId": "optimizer_type",
                                  "categoricalValueSpec": {"values": ["adam", "rmsprop"]}}],
                  "medianAutomatedStoppingSpec": {"useElapsedDuration": False}},
    "maxTrialCount": 3, "parallelTrialCount": 2, "maxFailedTrialCount": 1,
    "trialJobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1}]}}


def test_the_vertex_form_of_a_spec_gives_the_same_space_as_the_ai_platform_form():
    ai_platform = tuning_spec.parse(_ai_platform(LEARNING_RATE_AND_OPTIMIZER, maxTrials=3, maxParallelTrials=2,
                                                 maxFailedTrials=1, enableTrialEarlyStopping=True))
    vertex = tuning_spec.parse(VERTEX_FORM)
    assert ai_platform.params == vertex.params
    assert (ai_platform.metric, ai_platform.maximize, ai_platform.max_trials, ai_platform.max_parallel_trials,
            ai_platform.max_failed_trials, ai_platform.early_stopping, ai_platform.algorithm) == (
        vertex.metric, vertex.maximize, vertex.max_trials, vertex.max_parallel_trials, vertex.max_failed_trials,
        vertex.early_stopping, vertex.algorithm) == ("top_1_accuracy", True, 3, 2, 1, True, "tpe")
    # snake_case keys (the REST API's JSON) read the same.
    snake = {"study_spec": {"metrics": [{"metric_id": "top_1_accuracy", "goal": "MAXIMIZE"}],
                            "parameters": [{"parameter_id": "initial_learning_rate", "scale_type": "UNIT_LOG_SCALE",
                                            "double_value_spec": {"min_value": 0.0005, "max_value": 0.01}},
                                           {"parameter_id": "optimizer_type",
                                            "categorical_value_spec": {"values": ["adam", "rmsprop"]}}]},
             "max_trial_count": "3"}
    assert tuning_spec.parse(snake).params == vertex.params


@pytest.mark.parametrize("document, field", [
    (_ai_platform([{"parameterName": "initial_learning_rate", "type": "DOUBLE", "minValue": 0.1, "maxValue": 0.01}]),
     "params[0] (initial_learning_rate): maxValue (0.01) must be greater than minValue (0.1)"),
    (_ai_platform([{"parameterName": "initial_learning_rate", "type": "DOUBLE", "minValue": 0, "maxValue": 1,
                    "scaleType": "UNIT_LOG_SCALE"}]), "params[0] (initial_learning_rate).minValue: UNIT_LOG_SCALE"),
    (_ai_platform([{"parameterName": "optimizer_type", "type": "CATEGORICAL"}]),
     "params[0] (optimizer_type).categoricalValues/values: a non-empty list is needed"),
    (_ai_platform([{"parameterName": "x", "type": "FLOAT", "minValue": 0, "maxValue": 1}]),
     "params[0] (x).type: 'FLOAT' is not one of"),
    (_ai_platform(LEARNING_RATE_AND_OPTIMIZER, maxTrials=0), "hyperparameters.maxTrials: must be at least 1"),
    (_ai_platform(LEARNING_RATE_AND_OPTIMIZER, maxTrails=3), "unknown field(s) ['maxTrails']"),
    (_ai_platform(LEARNING_RATE_AND_OPTIMIZER, algorithm="GRID_SEARCH"),
     "GRID_SEARCH needs INTEGER, CATEGORICAL or DISCRETE parameters; ['initial_learning_rate'] are DOUBLE"),
    ({**VERTEX_FORM, "studySpec": {**VERTEX_FORM["studySpec"], "metrics": []}},
     "studySpec.metrics: a non-empty list is needed"),
    ({"studySpec": {"metrics": [{"metricId": "AP"}], "parameters": [
        {"parameterId": "x", "doubleValueSpec": {"minValue": 0, "maxValue": 1},
         "integerValueSpec": {"minValue": 0, "maxValue": 1}}]}}, "exactly one of doubleValueSpec"),
    ({"trainingInput": {"scaleTier": "BASIC"}}, "no trainingInput.hyperparameters.params"),
])
def test_a_malformed_spec_is_one_line_naming_the_field(document, field):
    with pytest.raises(UserInputError) as raised:
        tuning_spec.parse(document)
    assert field in str(raised.value) and "\n" not in str(raised.value)


def test_scales_reverse_log_is_dense_near_the_top_and_integers_stay_whole():
    reverse = tuning_spec.Param("aug_scale_max", "DOUBLE", 1.0, 100.0, "UNIT_REVERSE_LOG_SCALE")
    log = tuning_spec.Param("initial_learning_rate", "DOUBLE", 1.0, 100.0, "UNIT_LOG_SCALE")
    steps = tuning_spec.Param("warmup_steps", "INTEGER", 1, 50, "UNIT_LOG_SCALE")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {p.name: [] for p in (reverse, log, steps)}
    for _ in range(400):
        trial = study.ask()
        for param in (reverse, log, steps):
            drawn[param.name].append(suggest(trial, param))
        study.tell(trial, 0.0)
    assert all(1.0 <= v <= 100.0 for v in drawn["aug_scale_max"] + drawn["initial_learning_rate"])
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    assert median(drawn["aug_scale_max"]) > 85 and median(drawn["initial_learning_rate"]) < 15
    assert all(isinstance(v, int) and 1 <= v <= 50 for v in drawn["warmup_steps"])


def test_the_sweep_refuses_what_no_trial_could_run(digits, tmp_path, capsys):
    from absl import flags

    from tuning.tuner import Tuner, define_flags, main

    common = ["--", f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}", *TINY,
              "--max_steps=10"]
    cases = [
        (_ai_platform([{"parameterName": "learning_rate_x", "type": "DOUBLE", "minValue": 0.1, "maxValue": 1}]),
         [], "tuning spec parameter learning_rate_x: not a flag of this trainer"),
        (_ai_platform(LEARNING_RATE_AND_OPTIMIZER), ["--optimizer_type=adam"],
         "--optimizer_type is both swept by the tuning spec and fixed after --"),
        ({**VERTEX_FORM, "studySpec": {**VERTEX_FORM["studySpec"], "metrics": [{"metricId": "AP"}]}}, [],
         "the tuning spec's metric tag is AP, but a classification job reports top_1_accuracy"),
    ]
    for document, extra, message in cases:
        spec_file = tmp_path / "spec.json"
        spec_file.write_text(json.dumps(document))
        fv = flags.FlagValues()
        define_flags(fv)
        fv(["tune", f"--config={spec_file}", f"--job_dir={tmp_path / 'job'}"])
        with pytest.raises(UserInputError) as raised:
            Tuner(fv, [*common[1:], *extra])
        assert message in str(raised.value)
    assert main([f"--config={tmp_path / 'missing.yaml'}", f"--job-dir={tmp_path}", *common]) == 2
    assert "ERROR: cannot read the tuning spec" in capsys.readouterr().err
    # An unreachable study server: one line, the password masked.
    spec_file.write_text(json.dumps(_ai_platform(LEARNING_RATE_AND_OPTIMIZER)))
    assert main([f"--config={spec_file}", f"--job-dir={tmp_path / 'job'}",
                 f"--storage=postgresql://tuner:secret@{refusing_address()}/study", *common]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ERROR: --storage: cannot open postgresql://tuner:***@127.0.0.1:") and "secret" not in error


# -- PostgreSQL: tuners on several machines share one study -----------------------------------------------------

def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, "PostgreSQL is not installed: `make test` installs Debian's postgresql package (make test-services)"
    return found[-1]


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL server on a free local port, in a temp dir, stopped at the end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tempfile.mkdtemp(prefix="tuning-postgres-")  # outside pytest's 0700 dirs: the server's user reads it
    # PostgreSQL refuses to run as root: as root, the server runs as the package's postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(data, "postgres")
    subprocess.run([*as_user, _postgres_bin("initdb"), "-D", data, "-U", "tuner", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run([*as_user, _postgres_bin("pg_ctl"), "-D", data, "-l", f"{data}/server.log", "-w", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        subprocess.run([_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tuner", "study"],
                       check=True, capture_output=True)
        yield f"postgresql://tuner@127.0.0.1:{port}/study"
    finally:
        subprocess.run([*as_user, _postgres_bin("pg_ctl"), "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_two_tuners_sharing_one_postgresql_study_run_disjoint_trials(digits, tmp_path, postgres):
    spec = _ai_platform(LEARNING_RATE_AND_OPTIMIZER, maxTrials=4, maxParallelTrials=1)
    training = ["--max_steps=10", "--train_steps_per_eval=10"]
    # One job dir, as two machines share a gs:// one; each tuner keeps its trials' logs under tuning/trial_<n>.
    tuners = [_tune(tmp_path, spec, digits, training, f"--storage={postgres}", name=f"{side}.yaml", popen=True)
              for side in ("a", "b")]
    outputs = [tuner.communicate(timeout=600) for tuner in tuners]
    for tuner, (out, err) in zip(tuners, outputs):
        assert tuner.returncode == 0, out + err[-3000:]
    ran = [{int(line.split(":")[0].split()[1]) for line in out.splitlines() if line.endswith("}") and ": started" in line}
           for out, _ in outputs]
    assert ran[0] and ran[1] and not ran[0] & ran[1], ran
    assert ran[0] | ran[1] == {1, 2, 3, 4}
    study = optuna.load_study(study_name="tuning", storage=postgres)
    assert sorted(t.number + 1 for t in study.trials if t.state.name == "COMPLETE") == [1, 2, 3, 4]
    assert "***" not in postgres and outputs[0][0].splitlines()[0].endswith("study tuning in " + postgres)


def test_tuners_sharing_a_job_dir_write_its_results_files_at_the_same_time_without_failing(tmp_path):
    """Two tuners on one study write trials.csv and report.html into the same job dir: each write goes through
    a partial copy of its own (a shared `report.html.partial` was renamed away under the other's feet)."""
    import threading

    from tuning import results

    failures = []

    def writer(mark):
        try:
            for _ in range(300):
                results._atomic_write(str(tmp_path / "report.html"), lambda handle: handle.write(mark * 4096))
        except OSError as error:
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(mark,)) for mark in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    assert (tmp_path / "report.html").read_text() in ("a" * 4096, "b" * 4096)
    assert os.listdir(tmp_path) == ["report.html"], "no partial copy is left behind"
