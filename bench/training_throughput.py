"""What both trainer benchmarks share: a Trainer built from command-line flags, and training images/s through
the trainer's own compiled function fed by the real TFRecord pipeline vs. the same batch held in memory.

The two feeds alternate in rounds in one process (the machines are shared and noisy); the report is the ratio
of medians."""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402


def build_trainer(flags: list[str]):
    """(task, trainer, strategy) for the job these flags describe, as entrypoint.py would build them."""
    from algorithms import registry
    from algorithms.runtime.strategy import choose_strategy
    from algorithms.runtime.trainer import Trainer

    config = registry.parse_job_config(flags)
    task = registry.TASK_SPECS[config.task].make_task(config)
    strategy = choose_strategy(config.distribution_strategy)
    task.preflight()
    return task, Trainer(task, config, strategy), strategy


def real_vs_synthetic(task, trainer, strategy, batch: int, steps: int, rounds: int) -> dict:
    """Median training images/s for the real pipeline and for synthetic in-memory tensors, with every round."""
    real = iter(strategy.distribute_datasets_from_function(task.train_dataset))
    # The same batch shapes and values, held in memory: no reading, decoding, augmentation or target assignment.
    first_batch = next(iter(task.train_dataset(tf.distribute.InputContext())))
    synthetic = iter(strategy.distribute_datasets_from_function(
        lambda _: tf.data.Dataset.from_tensors(first_batch).repeat()))

    def images_per_second(iterator):
        started = time.perf_counter()
        float(trainer._train_fn(iterator, tf.constant(steps)))
        return steps * batch / (time.perf_counter() - started)

    images_per_second(real)  # trace and warm both paths
    images_per_second(synthetic)
    rounds_seen = {"real": [], "synthetic": []}
    for _ in range(rounds):
        rounds_seen["real"].append(images_per_second(real))
        rounds_seen["synthetic"].append(images_per_second(synthetic))
    real_rate, synthetic_rate = (statistics.median(rounds_seen[k]) for k in ("real", "synthetic"))
    return {"real": real_rate, "synthetic": synthetic_rate, "ratio": real_rate / synthetic_rate,
            "rounds": rounds_seen}


def devices() -> str:
    accelerators = [d.name for d in tf.config.list_logical_devices() if d.device_type != "CPU"]
    return f"{os.cpu_count()} CPUs, devices: {accelerators or 'CPU only'}"


def print_comparison(result: dict, target: float) -> None:
    for kind, label in (("real", "real TFRecord pipeline"), ("synthetic", "synthetic in-memory   ")):
        rounds = ", ".join(f"{r:.1f}" for r in result["rounds"][kind])
        print(f"  {label}: {result[kind]:.1f} images/s  (rounds: {rounds})")
    print(f"  ratio real/synthetic: {result['ratio']:.3f} (target >= {target})")
