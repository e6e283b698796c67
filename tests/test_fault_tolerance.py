"""Faults a managed platform throws at a long job, reproduced for real: a signal sent to a training process at a
step, a checkpoint state file deleted or garbled, checkpoints truncated and bit-flipped, an export that never
finished, a diverging learning rate, a disk that fills up. Each run ends clean, and its rerun resumes."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tests.conftest import FAST_FLAGS, REPO, run_entrypoint


def _args(digits, job_dir, max_steps, *extra):
    return [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            f"--job-dir={job_dir}", "--num_classes=10", f"--max_steps={max_steps}", *FAST_FLAGS, *extra]


def _error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert lines, result.stderr[-3000:]
    return lines[0]


def _checkpoint_steps(job_dir) -> list[int]:
    names = os.listdir(os.path.join(job_dir, "checkpoints"))
    return sorted(int(n[len("ckpt-"):-len(".index")]) for n in names if n.startswith("ckpt-") and n.endswith(".index"))


def _exported_step(job_dir) -> int:
    with open(os.path.join(job_dir, "model", "deployment_config.yaml")) as handle:
        return int(yaml.safe_load(handle)["labels"]["global_step"])


def _served_probabilities(model_dir, digits) -> np.ndarray:
    record = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(digits["validation"])[:1])))
    image = tf.train.Example.FromString(record.numpy()).features.feature["image/encoded"].bytes_list.value[0]
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    return serve(image_bytes=tf.constant([image]), key=tf.constant([b""]))["probabilities"].numpy()


@pytest.fixture(scope="module")
def finished_job(digits, tmp_path_factory):
    """A 40-step job evaluating (and checkpointing) every 10 steps: checkpoints 20, 30 and 40 are kept."""
    job_dir = str(tmp_path_factory.mktemp("finished") / "job")
    result = run_entrypoint(_args(digits, job_dir, 40, "--train_steps_per_eval=10", "--log_every_steps=10"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert _checkpoint_steps(job_dir) == [20, 30, 40]
    return job_dir


def _copy(job_dir, tmp_path) -> str:
    copy = str(tmp_path / "job")
    shutil.copytree(job_dir, copy)
    return copy


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_the_current_step_and_the_rerun_resumes_there(digits, tmp_path, signal_number):
    job_dir = str(tmp_path / "job")
    args = _args(digits, job_dir, 60, "--train_steps_per_eval=30", "--log_every_steps=5")
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "entrypoint.py"), *args], cwd=REPO,
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    log, saved_after = [], None
    for line in process.stderr:
        log.append(line)
        if " step 15/60 " in line:
            sent = time.monotonic()
            process.send_signal(signal_number)
        if " checkpoint " in line and " saved." in line:
            saved_after = time.monotonic() - sent
    stdout, rest = process.communicate(timeout=60)
    log = "".join(log) + rest
    assert process.returncode == 128 + signal_number, log[-3000:]
    # What the grace period must cover: the signal to the checkpoint on disk (the step under way finishes first).
    # The process's own exit after it is not timed: on a loaded machine it can take seconds more.
    assert saved_after is not None and saved_after < 20, f"took {saved_after} s to save; platforms kill after 30 s"
    stopped = [line for line in log.splitlines() if line.startswith("STOPPED: ")]
    (step,) = _checkpoint_steps(job_dir)
    assert 15 <= step < 30, step
    assert stopped == [f"STOPPED: stopped by {signal.Signals(signal_number).name} at step {step}; checkpoint "
                       f"{job_dir}/checkpoints/ckpt-{step} saved. Run the same command again to resume from it"]
    assert not os.path.exists(os.path.join(job_dir, "model")), "nothing half-done: no evaluation ran, no model"
    if signal_number == signal.SIGINT:
        return  # the rerun is the same after either signal

    rerun = run_entrypoint(args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from {job_dir}/checkpoints/ckpt-{step} at step {step}" in rerun.stderr
    assert f"training classification from step {step} to 60" in rerun.stderr
    assert _exported_step(job_dir) in (30, 60) and np.isfinite(_served_probabilities(f"{job_dir}/model", digits)).all()


def test_a_second_process_with_the_same_trial_fails_at_once_naming_the_first(digits, tmp_path):
    """Two processes training trial 3 into one job dir would corrupt each other's checkpoints and model."""
    job_dir = str(tmp_path / "job")
    env = {**os.environ, "CLOUD_ML_TRIAL_ID": "3"}
    first = subprocess.Popen([sys.executable, os.path.join(REPO, "entrypoint.py"),
                              *_args(digits, job_dir, 100000, "--log_every_steps=2")], cwd=REPO, env=env,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        for line in first.stderr:
            if " step 2/100000 " in line:
                break
        second = run_entrypoint(_args(digits, job_dir, 10), {"CLOUD_ML_TRIAL_ID": "3"})
        expected = f"ERROR: trial 3 is already being trained into this job dir by process {first.pid} on host "
        assert second.returncode == 2 and _error(second).startswith(expected), _error(second)
        assert first.poll() is None, "the first process is not disturbed"
        assert not os.path.exists(os.path.join(job_dir, "model", "trial_3")), "the refused process wrote nothing"
    finally:
        first.kill()  # kill -9: no chance to remove its lock
        first.wait()
    rerun = run_entrypoint(_args(digits, job_dir, 4, "--train_steps_per_eval=4"), {"CLOUD_ML_TRIAL_ID": "3"})
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"took over the job lock {job_dir}/checkpoints/trial_3/job.lock: process {first.pid} " in rerun.stderr
    assert not os.path.exists(os.path.join(job_dir, "checkpoints", "trial_3", "job.lock")), "released at the end"


def test_a_job_lock_from_another_host_is_watched_refused_while_it_beats_and_taken_over_when_it_stops(
        tmp_path, monkeypatch):
    """A lost VM cannot remove its lock: the rerun on a new VM watches it, and takes over only when no
    heartbeat arrives; a live holder elsewhere is refused as soon as its next heartbeat lands."""
    from algorithms.runtime import job_lock
    from core.errors import UserInputError

    monkeypatch.setattr(job_lock, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(job_lock, "STALE_SECONDS", 1.5)
    monkeypatch.setattr(job_lock, "WATCH_POLL_SECONDS", 0.05)
    holder = job_lock.JobLock(str(tmp_path), None)
    holder._owner["host"] = "worker-elsewhere"
    holder.acquire()
    started = time.monotonic()
    with pytest.raises(UserInputError) as refused:
        job_lock.JobLock(str(tmp_path), None).acquire()
    assert time.monotonic() - started < 1.0, "refused at the holder's next heartbeat, not after the stale time"
    assert "this job is already being trained into this job dir by process" in str(refused.value)
    assert "on host worker-elsewhere" in str(refused.value)

    holder._stop.set()  # the holder's VM is gone: no more heartbeats, no release
    holder._thread.join()
    started = time.monotonic()
    rerun = job_lock.JobLock(str(tmp_path), None)
    rerun.acquire()
    assert 1.0 < time.monotonic() - started < 5.0, "taken over once no heartbeat came for STALE_SECONDS"
    with open(tmp_path / job_lock.LOCK_FILE) as handle:
        assert json.load(handle)["token"] == rerun._owner["token"]
    rerun.release()
    assert not os.path.exists(tmp_path / job_lock.LOCK_FILE)


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_a_lost_or_garbled_state_file_still_resumes_from_the_newest_checkpoint(finished_job, digits, tmp_path, damage):
    job_dir = _copy(finished_job, tmp_path)
    state = os.path.join(job_dir, "checkpoints", "checkpoint")
    if damage == "deleted":
        os.remove(state)
    else:
        with open(state, "w") as handle:
            handle.write('model_checkpoint_path: "ckpt-9\x00\x00 {{{')
    result = run_entrypoint(_args(digits, job_dir, 50, "--train_steps_per_eval=10", "--log_every_steps=10"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {job_dir}/checkpoints/ckpt-40 at step 40" in result.stderr
    assert _checkpoint_steps(job_dir) == [30, 40, 50], "the rewritten state file lets the manager prune again"


def _truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)


def _flip_a_byte(path):
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("damage", [
    lambda prefix: _truncate(f"{prefix}.data-00000-of-00001"),
    lambda prefix: _flip_a_byte(f"{prefix}.data-00000-of-00001"),
    lambda prefix: _truncate(f"{prefix}.index"),
], ids=["truncated data", "bit-flipped data", "truncated index"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_older_intact_one(finished_job, digits, tmp_path, damage):
    job_dir = _copy(finished_job, tmp_path)
    damage(os.path.join(job_dir, "checkpoints", "ckpt-40"))
    result = run_entrypoint(_args(digits, job_dir, 40, "--train_steps_per_eval=10", "--log_every_steps=10"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint {job_dir}/checkpoints/ckpt-40 cannot be restored (" in result.stderr
    assert f"resumed from {job_dir}/checkpoints/ckpt-30 at step 30" in result.stderr
    assert os.path.exists(os.path.join(job_dir, "checkpoints", "unusable", "ckpt-40.index")), "kept for inspection"
    assert _checkpoint_steps(job_dir) == [20, 30, 40]
    assert np.isfinite(_served_probabilities(f"{job_dir}/model", digits)).all()


def test_a_missing_newest_index_is_skipped(finished_job, digits, tmp_path):
    job_dir = _copy(finished_job, tmp_path)
    os.remove(os.path.join(job_dir, "checkpoints", "ckpt-40.index"))
    result = run_entrypoint(_args(digits, job_dir, 40, "--train_steps_per_eval=10", "--log_every_steps=10"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {job_dir}/checkpoints/ckpt-30 at step 30" in result.stderr


def test_when_no_checkpoint_can_be_read_the_job_refuses_and_moves_nothing(finished_job, digits, tmp_path):
    job_dir = _copy(finished_job, tmp_path)
    for step in (20, 30, 40):
        _truncate(os.path.join(job_dir, "checkpoints", f"ckpt-{step}.data-00000-of-00001"))
    before = sorted(os.listdir(os.path.join(job_dir, "checkpoints")))
    result = run_entrypoint(_args(digits, job_dir, 40, "--train_steps_per_eval=10"))
    assert result.returncode == 2
    message = _error(result)
    assert message.startswith(f"ERROR: no checkpoint in {job_dir}/checkpoints can be restored (")
    assert f"delete {job_dir}/checkpoints to train from step 0" in message
    assert sorted(os.listdir(os.path.join(job_dir, "checkpoints"))) == before
    assert os.path.exists(os.path.join(job_dir, "model", "saved_model.pb"))


def test_a_model_without_checkpoints_is_never_silently_overwritten(finished_job, digits, tmp_path):
    job_dir = _copy(finished_job, tmp_path)
    shutil.rmtree(os.path.join(job_dir, "checkpoints"))
    exported = _exported_step(job_dir)
    result = run_entrypoint(_args(digits, job_dir, 40, "--train_steps_per_eval=10"))
    assert result.returncode == 2
    assert _error(result) == (
        f"ERROR: {job_dir}/model holds an exported model but {job_dir}/checkpoints has no checkpoint to resume "
        f"from; training from step 0 would replace that model. Delete {job_dir}/model to start over, or use "
        f"another --job-dir (with --pretrained_checkpoint_path={job_dir}/model to start from the model)")
    assert _exported_step(job_dir) == exported


def test_a_best_model_checkpointed_but_not_exported_is_exported_on_resume(digits, tmp_path):
    """The kill between the checkpoint of a new best step and its export: the rerun exports it."""
    job_dir = str(tmp_path / "job")
    args = _args(digits, job_dir, 20, "--train_steps_per_eval=20")
    first = run_entrypoint(args)
    assert first.returncode == 0, first.stderr[-3000:]
    served = _served_probabilities(f"{job_dir}/model", digits)
    shutil.rmtree(os.path.join(job_dir, "model"))  # as if killed right after the checkpoint of step 20
    os.makedirs(os.path.join(job_dir, "checkpoints", "ckpt-20_temp"))  # and mid-way through another save
    rerun = run_entrypoint(args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "the best model (step 20) was checkpointed but its export did not finish: exporting it now" in rerun.stderr
    assert f"removing {job_dir}/checkpoints/ckpt-20_temp, left by a checkpoint save that never finished" in rerun.stderr
    assert not os.path.exists(os.path.join(job_dir, "checkpoints", "ckpt-20_temp"))
    assert _exported_step(job_dir) == 20
    np.testing.assert_allclose(_served_probabilities(f"{job_dir}/model", digits), served, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_another_optimizer_is_a_clear_error(finished_job, digits, tmp_path):
    job_dir = _copy(finished_job, tmp_path)
    result = run_entrypoint(_args(digits, job_dir, 50, "--optimizer_type=momentum"))
    assert result.returncode == 2
    assert _error(result).startswith(f"ERROR: checkpoint {job_dir}/checkpoints/ckpt-40 does not fit this job (")
    assert "rerun with those, or use another --job-dir" in _error(result)


@pytest.mark.parametrize("flag", ["--initial_learning_rate=nan", "--label_smoothing=inf", "--weight_decay=-inf"])
def test_non_finite_flag_values_are_refused_before_anything_runs(digits, tmp_path, flag):
    result = run_entrypoint(_args(digits, str(tmp_path / "job"), 10, flag))
    assert result.returncode == 2
    assert _error(result) == f"ERROR: {flag.split('=')[0]}={float(flag.split('=')[1])} must be a finite number"
    assert not os.path.exists(tmp_path / "job")


def test_divergence_keeps_the_last_finite_state_and_a_lower_rate_resumes(finished_job, digits, tmp_path):
    job_dir = _copy(finished_job, tmp_path)  # at step 40, checkpoints 20, 30, 40
    exported = _exported_step(job_dir)
    diverging = run_entrypoint(_args(digits, job_dir, 60, "--train_steps_per_eval=10", "--log_every_steps=5",
                                     "--initial_learning_rate=1e12", "--warmup_steps=0"))
    assert diverging.returncode == 2, diverging.stderr[-3000:]
    message = _error(diverging)
    assert "training diverged. Nothing of this step was exported or checkpointed; the rerun resumes from " \
           f"{job_dir}/checkpoints/ckpt-40" in message
    assert "--initial_learning_rate (now 1e+12; try 2.5e+11)" in message
    assert _checkpoint_steps(job_dir) == [20, 30, 40] and _exported_step(job_dir) == exported
    assert np.isfinite(_served_probabilities(f"{job_dir}/model", digits)).all()
    lower = run_entrypoint(_args(digits, job_dir, 50, "--train_steps_per_eval=10"))
    assert lower.returncode == 0, lower.stderr[-3000:]
    assert f"resumed from {job_dir}/checkpoints/ckpt-40 at step 40" in lower.stderr
    assert _checkpoint_steps(job_dir) == [30, 40, 50]


@pytest.fixture()
def small_disk(tmp_path):
    """A 250 MiB tmpfs: one ResNet-18 checkpoint with Adam slots (~135 MiB) and one SavedModel (~45 MiB) fit, a
    second checkpoint does not."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=250m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_ends_in_one_line_with_the_best_model_intact(digits, small_disk):
    job_dir = str(small_disk / "job")
    result = run_entrypoint(_args(digits, job_dir, 40, "--train_steps_per_eval=20"))
    assert result.returncode == 2, result.stderr[-3000:]
    message = _error(result)
    assert message.startswith(f"ERROR: no space left on the disk (or quota) of {job_dir}/checkpoints while writing "
                              "the checkpoint of step 40 (about "), message
    assert "MiB needed)" in message and "the model in" in message
    assert _exported_step(job_dir) == 20 and np.isfinite(_served_probabilities(f"{job_dir}/model", digits)).all()
    assert not [name for name in os.listdir(os.path.join(job_dir, "checkpoints")) if name.endswith("_temp")]
    assert _checkpoint_steps(job_dir) == [20]


def _rewritten_jpeg_size(encoded: bytes, height: int, width: int) -> bytes:
    """The same JPEG bytes with the frame header (SOF0) claiming another size."""
    at = encoded.index(b"\xff\xc0")
    return encoded[:at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + encoded[at + 9:]


def test_image_sizes_are_read_from_headers_without_decoding():
    import io

    from PIL import Image

    from dataloaders import image_ops

    photo = np.zeros((300, 500, 3), np.uint8)
    for image_format in ("JPEG", "PNG", "GIF", "BMP"):
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format=image_format)
        encoded = tf.constant(buffer.getvalue())
        assert int(image_ops.header_pixels(encoded)) == 150_000, image_format
        assert image_ops.decode_rgb(encoded).shape == (300, 500, 3)
        with pytest.raises(tf.errors.InvalidArgumentError, match="more pixels than --max_image_pixels=149999"):
            image_ops.decode_rgb(encoded, 149_999)
    bomb = _rewritten_jpeg_size(_jpeg(photo), 60000, 60000)
    assert int(image_ops.header_pixels(tf.constant(bomb))) == 3_600_000_000
    with pytest.raises(tf.errors.InvalidArgumentError, match="more pixels than --max_image_pixels=64000000"):
        image_ops.decode_rgb(tf.constant(bomb))
    assert int(image_ops.header_pixels(tf.constant(b"neither"))) == 0


def _jpeg(array) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def test_a_12000_pixel_square_photo_is_skipped_before_it_is_decoded(digits, tmp_path):
    """A real 12000 x 12000 JPEG (144 Mpx) among the validation images: decoding it took 10.8 GiB
    (bench/image_bomb_bench.py); with the default limit it is counted as skipped and the job stays small."""
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import image_bomb_bench

    validation = str(tmp_path / "validation.tfrecord")
    image_bomb_bench.write_validation_with_a_bomb(digits["validation"], validation)
    code, log, peak_gib = image_bomb_bench.run_measured([
        sys.executable, os.path.join(REPO, "entrypoint.py"), f"--training_data_path={digits['train']}",
        f"--validation_data_path={validation}", f"--job-dir={tmp_path / 'job'}", "--num_classes=10",
        "--max_steps=2", "--train_steps_per_eval=2", *FAST_FLAGS], timeout=300)
    assert code == 0, log[-3000:]
    assert "skipped 1 of 150 validation records with undecodable or too large images" in log
    assert re.search(rf"WARNING: skipped record \d+ of {re.escape(validation)}: its image has 144000000 pixels, "
                     r"more than --max_image_pixels=64000000\n", log), "named by file and record, never decoded"
    assert "eval_images=149" in log
    assert peak_gib < 3.0, f"peak resident memory {peak_gib:.1f} GiB"
