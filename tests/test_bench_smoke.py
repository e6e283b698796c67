"""The benchmarks' measuring code on tiny settings, so `make bench` cannot rot unnoticed (figures come from
full runs of bench/, never from here)."""

import os
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
