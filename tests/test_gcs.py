"""gs:// for real: TensorFlow's own GCS filesystem against an emulator on 127.0.0.1 (tests/gcs_emulator.py)."""

import glob
import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import FAST_FLAGS, run_entrypoint
from tests.gcs_emulator import FakeGcs

BUCKET = "training-bucket"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory, digits):
    fake = FakeGcs(str(tmp_path_factory.mktemp("gcs")))
    client = fake.client()
    bucket = client.create_bucket(BUCKET)
    data_dir = os.path.dirname(digits["train"])
    for name in sorted(os.listdir(data_dir)):
        bucket.blob(f"data/{name}").upload_from_filename(os.path.join(data_dir, name))
    yield fake
    fake.close()


# A small model (1.5 M parameters): every checkpoint (weights, Adam's two slots, the weights' moving average) and
# export crosses the emulator, and what these tests check is the I/O, not the network.
GCS_FLAGS = [*FAST_FLAGS, "--model_type=mobilenet-v3-small"]

def _blobs(gcs, prefix):
    return sorted(blob.name for blob in gcs.client().list_blobs(BUCKET, prefix=prefix))


def _args(job, max_steps, *extra):
    return [f"--training_data_path=gs://{BUCKET}/data/train-*", f"--validation_data_path=gs://{BUCKET}/data/validation-*",
            f"--job-dir=gs://{BUCKET}/{job}", "--num_classes=10", f"--max_steps={max_steps}",
            "--train_steps_per_eval=2", *GCS_FLAGS, *extra]


@pytest.fixture(scope="module")
def gcs_job(gcs, tmp_path_factory):
    """A 4-step job with every output on gs://: the resume test continues it, the warm-start test starts from it."""
    env = {**gcs.env, "CLOUD_ML_HP_METRIC_FILE": str(tmp_path_factory.mktemp("hypertune") / "metrics")}
    first = run_entrypoint(_args("jobs/one", 4), env)
    assert first.returncode == 0, first.stderr[-3000:]
    return {"env": env, "log": first.stderr, "blobs": _blobs(gcs, "jobs/one/")}


def test_train_export_resume_and_serve_on_gcs(gcs, gcs_job):
    env, blobs = gcs_job["env"], gcs_job["blobs"]
    assert "2 training file(s)" in gcs_job["log"]  # the glob found both gs:// shards
    for expected in ("jobs/one/model/saved_model.pb", "jobs/one/model/deployment_config.yaml",
                     "jobs/one/checkpoints/ckpt-4.index", "jobs/one/checkpoints/checkpoint"):
        assert expected in blobs, blobs
    assert not [b for b in blobs if "/.model." in b], "no half-swapped model may remain"
    assert "jobs/one/checkpoints/job.lock" not in blobs, "the job lock is released at the end"

    second = run_entrypoint(_args("jobs/one", 6), env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from gs://{BUCKET}/jobs/one/checkpoints/ckpt-4 at step 4" in second.stderr, second.stderr[-6000:]
    assert "jobs/one/checkpoints/ckpt-6.index" in _blobs(gcs, "jobs/one/")

    script = ("import tensorflow as tf\n"
              f"sig = tf.saved_model.load('gs://{BUCKET}/jobs/one/model').signatures['serving_default']\n"
              f"image = tf.io.gfile.GFile('gs://{BUCKET}/data/validation-00000-of-00001', 'rb').read()\n"
              "record = next(iter(tf.data.TFRecordDataset('" f"gs://{BUCKET}/data/validation-00000-of-00001" "')))\n"
              "example = tf.train.Example.FromString(record.numpy())\n"
              "image = example.features.feature['image/encoded'].bytes_list.value[0]\n"
              "out = sig(image_bytes=tf.constant([image]), key=tf.constant([b'gs-key']))\n"
              "print('served', out['probabilities'].shape, out['key'].numpy()[0].decode())\n")
    served = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, **gcs.env}, timeout=300)
    assert "served (1, 10) gs-key" in served.stdout, served.stderr[-2000:]


def test_warm_start_from_a_gcs_checkpoint_with_epochs_counted_on_gcs(gcs, gcs_job, digits):
    # The warm job's length in epochs: its training records are counted from their framing on gs://.
    warm_args = [arg for arg in _args("jobs/warm", 1) if not arg.startswith("--max_steps")]
    source = f"gs://{BUCKET}/jobs/one/checkpoints/ckpt-4"  # kept whether or not the resume test ran first
    warm = run_entrypoint([*warm_args, "--epochs=0.01", f"--pretrained_checkpoint_path={source}"], gcs.env)
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert f"--epochs=0.01: {digits['num_train']} training images (counted in gs://{BUCKET}/data/train-*) / batch " \
           "32 -> --max_steps=1" in warm.stderr
    assert f"backbone and head restored from {source}" in warm.stderr


def test_missing_bucket_is_a_clear_error(gcs):
    result = run_entrypoint([*_args("jobs/x", 2)[2:], "--training_data_path=gs://no-such-bucket/data/train-*",
                             f"--validation_data_path=gs://{BUCKET}/data/validation-*"], gcs.env)
    assert result.returncode == 2
    assert ("ERROR: --training_data_path=gs://no-such-bucket/data/train-* cannot be listed: bucket "
            "gs://no-such-bucket does not exist") in result.stderr


def test_unreadable_training_file_is_a_clear_error(gcs, digits):
    """An object the job may list but not read (a 403, as with storage.objects.list but not .get): one line
    naming it. This replaces a chmod-0 local file, which root (how CI runs) reads anyway."""
    shard = sorted(glob.glob(digits["train"]))[0]
    gcs.client().bucket(BUCKET).blob("locked/train.tfrecord").upload_from_filename(shard)
    gcs.unreadable.add("locked/train.tfrecord")
    try:
        result = run_entrypoint([f"--training_data_path=gs://{BUCKET}/locked/train.tfrecord",
                                 f"--validation_data_path=gs://{BUCKET}/data/validation-*",
                                 f"--job-dir=gs://{BUCKET}/jobs/locked",
                                 "--num_classes=10", "--max_steps=2", *GCS_FLAGS], gcs.env)
    finally:
        gcs.unreadable.discard("locked/train.tfrecord")
    error = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert result.returncode == 2 and error, result.stderr[-2000:]
    assert error[0].startswith(f"ERROR: cannot read gs://{BUCKET}/locked/train.tfrecord: "), error[0]
    assert "403" in error[0] and "storage.objects.get" in error[0], error[0]
    assert not _blobs(gcs, "jobs/locked/model"), "no model may be written when the input is bad"


def test_missing_output_bucket_fails_before_training(gcs):
    result = run_entrypoint([*_args("jobs/x", 2)[:2], "--job-dir=gs://no-output-bucket/job", *_args("jobs/x", 2)[3:]],
                            gcs.env)
    assert result.returncode == 2
    assert "cannot write the job dir gs://no-output-bucket/job/checkpoints: bucket gs://no-output-bucket" in result.stderr
    assert "step 1/" not in result.stderr


def test_converter_reads_and_writes_gs_through_beams_filesystems(gcs, tmp_path):
    """python -m data.jpeg_to_tf_record with a gs:// CSV, gs:// images and gs:// output (DirectRunner)."""
    import tensorflow as tf
    from PIL import Image

    from tests.test_converters import _photo

    bucket = gcs.client().bucket(BUCKET)
    rows = []
    for i, name in enumerate(("chelsea", "coffee", "rocket", "astronaut")):
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(_photo(name, (48, 64))).save(path, quality=90)
        bucket.blob(f"photos/{name}.jpg").upload_from_filename(str(path))
        rows.append(f"gs://{BUCKET}/photos/{name}.jpg,{'animal' if i % 2 == 0 else 'thing'}")
    rows.append(f"gs://{BUCKET}/photos/missing.jpg,thing")
    bucket.blob("photos/train.csv").upload_from_string("\n".join(rows) + "\n")
    result = subprocess.run([sys.executable, "-m", "data.jpeg_to_tf_record", f"--train_csv=gs://{BUCKET}/photos/train.csv",
                             f"--output_dir=gs://{BUCKET}/converted", "--runner=DirectRunner"], capture_output=True,
                            text=True, env={**os.environ, **gcs.beam_env},
                            cwd=os.path.dirname(os.path.dirname(__file__)), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train: 4 of 5 images written" in result.stdout and "rejected missing_file: 1" in result.stdout
    assert _blobs(gcs, "converted/") == ["converted/labels.txt", "converted/rejected.csv",
                                         "converted/train-00000-of-00001"]
    local = tmp_path / "train.tfrecord"
    bucket.blob("converted/train-00000-of-00001").download_to_filename(str(local))
    labels = sorted(tf.train.Example.FromString(r.numpy()).features.feature["image/class/label"].int64_list.value[0]
                    for r in tf.data.TFRecordDataset(str(local)))
    assert labels == [1, 1, 2, 2]


def test_batch_predict_reads_a_gs_model_list_and_images_and_writes_its_output_to_gs(gcs, gcs_job, tmp_path):
    """entrypoint.py batch_predict with everything on gs://: the model (gcs_job's export), a file list naming
    gs:// images (one missing) and the output folder."""
    import json

    import tensorflow as tf

    bucket = gcs.client().bucket(BUCKET)
    local = tmp_path / "validation.tfrecord"
    bucket.blob("data/validation-00000-of-00001").download_to_filename(str(local))
    for index, raw in enumerate(tf.data.TFRecordDataset(str(local)).take(3)):
        encoded = tf.train.Example.FromString(raw.numpy()).features.feature["image/encoded"].bytes_list.value[0]
        bucket.blob(f"to_score/digit_{index}.jpg").upload_from_string(encoded)
    listed = [f"gs://{BUCKET}/to_score/digit_{index}.jpg" for index in range(3)] + [f"gs://{BUCKET}/to_score/gone.jpg"]
    bucket.blob("to_score/list.txt").upload_from_string("\n".join(listed) + "\n")
    result = run_entrypoint(["batch_predict", f"--model_dir=gs://{BUCKET}/jobs/one/model",
                             f"--input_paths=gs://{BUCKET}/to_score/*.txt", f"--output_path=gs://{BUCKET}/scored",
                             "--data_format=file_list"], gcs.beam_env)
    assert result.returncode == 0, result.stderr[-3000:]
    written = _blobs(gcs, "scored/")
    assert "scored/prediction.errors_stats-00000-of-00001" in written
    results = [name for name in written if name.startswith("scored/prediction.results-")]
    assert results and len(written) == len(results) + 1, written
    lines = [json.loads(line) for name in results for line in bucket.blob(name).download_as_text().splitlines()]
    assert sorted(line["key"] for line in lines) == listed[:3]
    assert all(len(line["predictions"]) == 5 for line in lines)
    counts, missing = [json.loads(line) for line in
                       bucket.blob("scored/prediction.errors_stats-00000-of-00001").download_as_text().splitlines()]
    assert counts["inputs"] == 4 and counts["predicted"] == 3 and counts["errors_by_reason"] == {"unreadable": 1}
    assert missing["input"] == listed[3]


def test_serve_as_vertex_ai_starts_it_copies_the_gs_model_and_answers_on_the_aip_routes(gcs, gcs_job, tmp_path):
    """Vertex AI's custom-container contract: no arguments, the model at AIP_STORAGE_URI (gs://, copied at start),
    the port and routes from AIP_HTTP_PORT, AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE."""
    import base64
    import json

    import tensorflow as tf

    from tests.conftest import free_port
    from tests.test_serve import call, running_server

    bucket = gcs.client().bucket(BUCKET)
    local = tmp_path / "validation.tfrecord"
    bucket.blob("data/validation-00000-of-00001").download_to_filename(str(local))
    images = [tf.train.Example.FromString(raw.numpy()).features.feature["image/encoded"].bytes_list.value[0]
              for raw in tf.data.TFRecordDataset(str(local)).take(3)]
    port = free_port()
    route = "/v1/endpoints/123/deployedModels/456"
    env = {**gcs.env, "AIP_STORAGE_URI": f"gs://{BUCKET}/jobs/one/model", "AIP_HTTP_PORT": str(port),
           "AIP_HEALTH_ROUTE": route, "AIP_PREDICT_ROUTE": f"{route}:predict"}
    base = f"http://127.0.0.1:{port}"
    body = json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(image).decode()}, "key": f"digit-{i}"}
                                     for i, image in enumerate(images)], "parameters": {"top_k": 10}}).encode()
    with running_server([], env, f"{base}{route}", tmp_path / "serve.log"):
        status, answer = call(f"{base}{route}:predict", body, "application/json")
        assert status == 200 and [line["key"] for line in answer["predictions"]] == ["digit-0", "digit-1", "digit-2"]
        for line in answer["predictions"]:
            scores = [p["score"] for p in line["predictions"]]
            assert len(scores) == 10 and scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-3)
            assert sorted(p["label"] for p in line["predictions"]) == list(range(1, 11))
        # SageMaker's routes answer too, the same.
        assert call(f"{base}/invocations", body, "application/json") == (200, answer)
        assert call(f"{base}/ping")[0] == 200
    assert f"from gs://{BUCKET}/jobs/one/model" in (tmp_path / "serve.log").read_text()


def test_one_process_per_trial_holds_the_gcs_job_lock(gcs, monkeypatch):
    """The lock is a generation-matched create: a second holder is refused naming the first, a stale one
    (no heartbeat) is taken over atomically, and release removes only our own lock."""
    from algorithms.runtime import job_lock
    from core.errors import UserInputError

    gcs.client()  # points google-cloud-storage at the emulator
    directory = f"gs://{BUCKET}/locks/checkpoints/trial_3"
    first = job_lock.JobLock(directory, "3")
    first._owner["host"] = "lost-vm"  # a holder on another machine: only its heartbeat tells it is alive
    first.acquire()
    assert f"locks/checkpoints/trial_3/{job_lock.LOCK_FILE}" in _blobs(gcs, "locks/")
    monkeypatch.setattr(job_lock, "STALE_SECONDS", 3)
    monkeypatch.setattr(job_lock, "WATCH_POLL_SECONDS", 0.2)
    threading.Timer(1.0, first._file.replace, (first._text(), first._version)).start()  # its next heartbeat
    with pytest.raises(UserInputError) as refused:
        job_lock.JobLock(directory, "3").acquire()
    assert str(refused.value).startswith(
        f"trial 3 is already being trained into this job dir by process {os.getpid()} on host lost-vm")
    assert f"delete {directory}/{job_lock.LOCK_FILE}" in str(refused.value)
    first._version = first._file.read()[2]

    monkeypatch.setattr(job_lock, "STALE_SECONDS", -1)  # as if the first holder died long ago on another VM
    second = job_lock.JobLock(directory, "3")
    second.acquire()
    first.release()  # the old holder coming back must not remove the new holder's lock
    assert f"locks/checkpoints/trial_3/{job_lock.LOCK_FILE}" in _blobs(gcs, "locks/")
    second.release()
    assert _blobs(gcs, "locks/") == []


def _retrying_env(gcs, retries):
    # TensorFlow's GCS client retries with exponential backoff from this first delay (1 s by default).
    return {**gcs.env, "GCS_RETRY_CONFIG_MAX_RETRIES": str(retries), "GCS_RETRY_CONFIG_INIT_DELAY_TIME_US": "100000"}


def _run_against_a_failing_object(gcs, args, operation, name, retries) -> tuple[str, dict]:
    """Runs the job while every `operation` on objects starting with `name` answers 503; returns its one ERROR
    line (exit code 2) and the fault rule (its hits)."""
    rule = gcs.inject(operation, name, "503", times=None)
    try:
        result = run_entrypoint(args, _retrying_env(gcs, retries))
    finally:
        gcs.faults.clear()
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    return errors[0], rule


def test_gcs_faults_persistent_ones_end_in_one_line_and_transient_ones_are_retried(gcs):
    """A bucket that keeps answering 503 to the export copy: one line naming the object, no half model, the
    best model's checkpoint kept. The rerun, through 503s and dropped connections on reads, on the checkpoint
    write and on the export copy, retries each one, resumes, and exports. A checkpoint that keeps answering 503
    to reads ends the next rerun in one line, with nothing set aside as corrupt."""
    error, rule = _run_against_a_failing_object(gcs, _args("down", 2), "write", "down/model/saved_model.pb", 2)
    assert error.startswith(f"ERROR: could not write the exported model of step 2 under gs://{BUCKET}/down/model, "
                            "even after retrying: "), error
    assert "503" in error and "rerun the same command to resume" in error, error
    assert 3 <= rule["hits"] <= 12, f"retried, within bounds: {rule['hits']} tries"
    blobs = _blobs(gcs, "down/")
    assert "down/model/saved_model.pb" not in blobs and not [b for b in blobs if "/.model." in b], \
        "no half model: the target never got its saved_model.pb, and the unfinished copy is gone"
    assert "down/checkpoints/ckpt-2.index" in blobs, "the best model's checkpoint came first"
    assert "down/checkpoints/job.lock" not in blobs

    rules = [gcs.inject("read", "data/train-", "503", 2), gcs.inject("read", "data/train-", "reset", 1),
             gcs.inject("write", "down/checkpoints/ckpt-4", "503", 2),
             gcs.inject("write", "down/model/saved_model.pb", "503", 1),
             gcs.inject("write", "down/model/saved_model.pb", "reset", 1)]
    try:
        rerun = run_entrypoint(_args("down", 4), _retrying_env(gcs, 4))
    finally:
        gcs.faults.clear()
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from gs://{BUCKET}/down/checkpoints/ckpt-2 at step 2" in rerun.stderr
    assert [rule["hits"] for rule in rules] == [2, 1, 2, 1, 1], "every injected fault was met, and retried"
    blobs = _blobs(gcs, "down/")
    assert "down/model/saved_model.pb" in blobs and "down/checkpoints/ckpt-4.index" in blobs, blobs
    assert not [b for b in blobs if "/.model." in b or b.endswith("job.lock")], blobs

    # A checkpoint the bucket will not serve is not a corrupt one: one line, and it stays where it is.
    error, rule = _run_against_a_failing_object(gcs, _args("down", 6), "read", "down/checkpoints/ckpt-4.data", 1)
    assert error.startswith(f"ERROR: could not read the checkpoint gs://{BUCKET}/down/checkpoints/ckpt-4, even "
                            "after retrying: "), error
    assert "No checkpoint was changed; rerun the same command to resume from it" in error, error
    assert rule["hits"] >= 3, rule["hits"]
    kept = lambda names: [n for n in names if "/checkpoints/" in n or "/model/" in n]  # noqa: E731
    assert kept(_blobs(gcs, "down/")) == kept(blobs), "no checkpoint set aside, nothing exported"


def test_a_validation_file_that_keeps_failing_mid_pass_is_named_not_called_corrupt(gcs, tmp_path):
    """The file lists and stats fine, then every content read answers 503: the evaluation stops naming it,
    instead of passing a storage outage off as a corrupt file."""
    script = ("import sys\n"
              "from dataloaders import classification_input\n"
              "from dataloaders.record_pipeline import RecordCounters\n"
              "from core.errors import data_error_from_tf_message\n"
              "import tensorflow as tf\n"
              f"files = ['gs://{BUCKET}/data/validation-00000-of-00001']\n"
              "dataset = classification_input.build_dataset(files, training=False, image_size=16, batch_size=4, "
              "num_classes=10, counters=RecordCounters('eval'))\n"
              "print('built', flush=True)\n"
              "sys.stdin.readline()\n"  # the faults start now
              "try:\n"
              "    list(dataset)\n"
              "except tf.errors.OpError as error:\n"
              "    print('ERROR:', data_error_from_tf_message(error.message))\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **_retrying_env(gcs, 1)},
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert process.stdout.readline().strip() == "built"
        gcs.inject("read", "data/validation-00000-of-00001", "503", times=None)
        process.stdin.write("\n")
        process.stdin.flush()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        gcs.faults.clear()
        process.kill()
    expected = f"ERROR: cannot read gs://{BUCKET}/data/validation-00000-of-00001 (at its first record): "
    assert stdout.startswith(expected), stdout + stderr[-3000:]
    assert "503" in stdout, stdout


def test_a_sweep_with_a_gs_job_dir_keeps_its_study_in_the_bucket_and_resumes_on_another_machine(gcs, tmp_path):
    import yaml

    spec = {"trainingInput": {"hyperparameters": {
        "goal": "MAXIMIZE", "hyperparameterMetricTag": "top_1_accuracy", "maxTrials": 1, "algorithm": "GRID_SEARCH",
        "params": [{"parameterName": "label_smoothing", "type": "DISCRETE", "discreteValues": [0.1]}]}}}
    gcs.client().bucket(BUCKET).blob("specs/sweep.yaml").upload_from_string(yaml.safe_dump(spec))
    command = ["tune", f"--config=gs://{BUCKET}/specs/sweep.yaml", f"--job-dir=gs://{BUCKET}/jobs/sweep", "--",
               *[a for a in _args("unused", 2) if not a.startswith("--job-dir")]]
    for machine in ("machine_a", "machine_b"):
        (tmp_path / machine).mkdir()  # each machine's local state (TMPDIR): the trials' logs, the study's copy
    first = run_entrypoint(command, {**gcs.env, "TMPDIR": str(tmp_path / "machine_a")}, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    blobs = _blobs(gcs, "jobs/sweep/")
    for name in ("tuning/study.db", "tuning/trials.csv", "tuning/report.html", "tuning/trial_1/log.txt",
                 "model/trial_1/saved_model.pb"):
        assert f"jobs/sweep/{name}" in blobs, blobs
    # Another machine (an empty local dir) reads the study from the bucket: the finished trial is not rerun.
    second = run_entrypoint(command, {**gcs.env, "TMPDIR": str(tmp_path / "machine_b")}, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    assert "started" not in second.stdout
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]
    assert second.stdout.splitlines()[-1].startswith("best trial 1: top_1_accuracy=")
    assert second.stdout.splitlines()[-1].endswith(f"model gs://{BUCKET}/jobs/sweep/model/trial_1")
