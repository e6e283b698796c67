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


def test_accuracy_bench_builds_real_photo_sets_trains_both_sides_and_prints_the_table(tmp_path):
    """bench/accuracy_bench.py end to end on tiny settings: the Debian packages fetched and unpacked, a
    classification and a detection set assembled from their photos, the product (its defaults) and the plain
    Keras / KerasHub baselines trained on each and scored on the test split."""
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "accuracy_bench.py"), "--sets=stamps,stamps-det",
         "--variants=defaults", "--seeds=3", "--classification_steps=3", "--detection_steps=2",
         "--images_scale=0.02", "--detection_image_size=128", f"--cache_dir={tmp_path}"], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| (\S+) \| (\d+) \| ([^|]+) \| (top-1|AP) ([\d.]+) \| ([\d.]+) \| (\d+) \| ([^|]+) \| ([^|]+) \|$",
                      result.stdout, re.MULTILINE)
    assert [(r[0], r[1], r[2].strip(), r[3]) for r in rows] == [
        ("stamps", "3", "plain Keras (Adam 1e-3, fit)", "top-1"), ("stamps", "3", "product, defaults", "top-1"),
        ("stamps-det", "2", "plain KerasHub RetinaNet (Adam 1e-3)", "AP"), ("stamps-det", "2", "product, defaults", "AP")]
    assert all(0.0 <= float(r[4]) <= 1.0 for r in rows)
    assert rows[1][8].strip() == "adam, peak learning rate 0.001" and rows[3][8].strip() == "adam, peak learning rate 0.001"
    assert sorted(os.listdir(os.path.join(tmp_path, "sets", "stamps-64px-x0.02"))) == [
        "labels.txt", "test-00000-of-00001", "train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"]
    # The test split shows objects that neither training nor model selection saw: stamps are split by file.
    import numpy as np

    import accuracy_sets

    animals = accuracy_sets.stamps(os.path.join(tmp_path, "root"), "animals")
    splits = accuracy_sets.split_by_file(animals, np.random.default_rng(0))
    assert len(animals) > 100 and sum(map(len, splits.values())) == len(animals)
    assert not set(splits["test"]) & (set(splits["train"]) | set(splits["validation"]))
    # The YOLO peer (a torch venv, not installed here) trains on the same records written in its layout: the
    # image bytes as they are, one "class cx cy w h" line (0-based, normalized) per box.
    import accuracy_bench

    test_split = os.path.join(tmp_path, "sets", "stamps-det-128px-x0.02", "test-*")
    written = accuracy_bench._write_yolo_split(test_split, str(tmp_path / "yolo" / "images"), str(tmp_path / "yolo" / "labels"))
    scene = accuracy_bench.detection_test_set(test_split)[0]
    assert written == 8 and open(tmp_path / "yolo" / "images" / "000000.jpg", "rb").read() == scene["encoded"]
    (ymin, xmin, ymax, xmax), label = scene["boxes"][0], scene["labels"][0]
    first = [float(v) for v in open(tmp_path / "yolo" / "labels" / "000000.txt").readline().split()]
    np.testing.assert_allclose(first, [label - 1, (xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin], atol=1e-5)


def test_serve_bench_loads_a_real_server_and_prints_every_level(trained_job, tmp_path):
    """bench/serve_bench.py end to end on tiny settings, on the trained classifier: the limit measured, `serve`
    started and loaded by 1 then 4 keep-alive clients; every request answered."""
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "serve_bench.py"), "--images=16",
                             "--seconds=1", "--clients=1,4", "--kinds=classifier",
                             f"--model_dir={trained_job['model_dir']}",
                             f"--cache_dir={tmp_path / 'bench-cache'}"], capture_output=True, text=True, timeout=600,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| classifier |")]
    assert [row[2].strip() for row in rows] == ["1", "4"], result.stdout
    assert all(row[6].strip() == "0" and float(row[3]) > 0 for row in rows), result.stdout
