"""The benchmarks' measuring code on tiny settings, so `make bench` cannot rot unnoticed (figures come from
full runs of bench/, never from here)."""

import os
import re
import subprocess
import sys

from tests.conftest import FAST_FLAGS, REPO

sys.path.insert(0, os.path.join(REPO, "bench"))


def test_throughput_rounds_time_real_synthetic_and_the_pipeline_alone(digits, tmp_path):
    import training_throughput

    task, trainer, strategy = training_throughput.build_trainer([
        f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
        f"--job_dir={tmp_path / 'job'}", "--num_classes=10", "--max_steps=1000", *FAST_FLAGS,
        "--train_batch_size=8"])
    result = training_throughput.real_vs_synthetic(task, trainer, strategy, batch=8, steps=3, rounds=2,
                                                   warmup_steps=1)
    for kind in ("real", "synthetic", "pipeline"):
        assert len(result["rounds"][kind]) == 2 and all(rate > 0 for rate in result["rounds"][kind])
    assert result["ratio"] == result["real"] / result["synthetic"]
    assert trainer.step == 2 * 2 * (1 + 3), "each training round ran its warm-up and timed steps on the model"


def test_transfer_bench_reads_time_per_step_from_a_jobs_log(trained_job):
    import transfer_bench

    # The job logs every 50 steps: intervals 1-50, 50-100, 100-150; the one-step first call is left out.
    first, second = transfer_bench.milliseconds_per_step(trained_job["log"], 32, 0)
    assert first > 0 and second is None
    first, second = transfer_bench.milliseconds_per_step(trained_job["log"], 32, 50)
    assert first > 0 and second > 0


def test_determinism_bench_reads_the_training_rates_from_a_jobs_log(trained_job):
    import determinism_bench

    # Logged at steps 1, 50, 100, 150: the first interval after step 1 warms up, so two rates are left.
    rates = determinism_bench.interval_rates(trained_job["log"])
    assert len(rates) == 2 and all(rate > 0 for rate in rates)


def test_converter_bench_builds_distinct_photos_once_and_times_both_sides_at_two_sizes(tmp_path):
    import converter_bench

    cache = tmp_path / "cache"
    all_csv = converter_bench.build_photo_set(str(cache), 30)
    lines = open(all_csv).read().splitlines()
    paths = [line.split(",")[0] for line in lines]
    assert len(paths) == 30 and len({open(path, "rb").read() for path in paths}) == 30
    from PIL import Image

    sizes = [Image.open(path).size for path in paths[:2]]
    assert sizes == [(320, 240), (640, 480)] and Image.open(paths[0]).format == "JPEG"
    built = os.path.getmtime(paths[0])
    assert converter_bench.build_photo_set(str(cache), 30) == all_csv and os.path.getmtime(paths[0]) == built

    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "converter_bench.py"), "--images=30",
                             "--small=10", "--rounds=1", "--other_layouts=in_memory:1",
                             f"--cache_dir={tmp_path / 'bench-cache'}"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # Each side ran at both sizes (and wrote every record: the bench checks the count after each run).
    for name in ("ours", "reference port", "ours, in_memory x1"):
        assert len(re.findall(rf"round 1: {name} +(10|30) images +[0-9.]+ s", out)) == 2, out
        assert re.search(rf"^{name} +-?[0-9]+ +-?[0-9]+ +([0-9]+|n/a) +-?[0-9.]+ +[0-9.]+$", out, re.M), out
    assert re.search(r"per-image ratio ours/reference port: ([0-9.]+x|n/a)", out), out
    assert "wall-time ratio at 30 images:" in out
