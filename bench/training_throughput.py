"""What both trainer benchmarks share: a Trainer built from command-line flags, and training images/s through
the trainer's own compiled function fed by the real TFRecord pipeline vs. the same batch held in memory, plus
the real pipeline alone (no model), which shows how much headroom the input has.

The feeds alternate in rounds in one process (the machines are shared and noisy); the report is the ratio of
medians. Every round starts a fresh iterator and warms it with untimed steps, then times `steps` steps at once:
an iterator kept across rounds would fill its prefetch buffers (and keep its threads busy) while the other
feed is timed, flattering the real pipeline and slowing the synthetic one."""

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
    from algorithms.runtime.job_layout import JobLayout
    from algorithms.runtime.strategy import choose_strategy
    from algorithms.runtime.trainer import Trainer

    config = registry.parse_job_config(flags)
    task = registry.TASK_SPECS[config.task].make_task(config)
    strategy = choose_strategy(config.distribution_strategy)
    task.preflight()
    return task, Trainer(task, config, strategy, JobLayout.create(config.job_dir)), strategy


def real_vs_synthetic(task, trainer, strategy, batch: int, steps: int, rounds: int, warmup_steps: int = 2) -> dict:
    """Median training images/s for the real pipeline, for synthetic in-memory tensors, and for the real
    pipeline alone (batches pulled, no model), with every round."""
    # The same batch shapes and values, held in memory: no reading, decoding, augmentation or target assignment.
    train_dataset = trainer._train_dataset  # the job's own stream: seeded, from the trainer's step
    first_batch = next(iter(train_dataset(tf.distribute.InputContext())))
    feeds = {
        "real": lambda: iter(strategy.distribute_datasets_from_function(train_dataset)),
        "synthetic": lambda: iter(strategy.distribute_datasets_from_function(
            lambda _: tf.data.Dataset.from_tensors(first_batch).repeat())),
    }

    def training_rate(make_iterator):
        iterator = make_iterator()
        float(trainer._train_fn(iterator, tf.constant(warmup_steps)))  # fills the shuffle buffer, traces once
        started = time.perf_counter()
        float(trainer._train_fn(iterator, tf.constant(steps)))
        return steps * batch / (time.perf_counter() - started)

    def pipeline_rate():
        iterator = iter(train_dataset(tf.distribute.InputContext()))
        for _ in range(warmup_steps):
            next(iterator)
        started = time.perf_counter()
        for _ in range(steps):
            tf.nest.map_structure(lambda t: t.numpy(), next(iterator))
        return steps * batch / (time.perf_counter() - started)

    rounds_seen = {"real": [], "synthetic": [], "pipeline": []}
    for _ in range(rounds):
        for kind, make_iterator in feeds.items():
            rounds_seen[kind].append(training_rate(make_iterator))
        rounds_seen["pipeline"].append(pipeline_rate())
    medians = {kind: statistics.median(values) for kind, values in rounds_seen.items()}
    return {**medians, "ratio": medians["real"] / medians["synthetic"], "rounds": rounds_seen}


def devices() -> str:
    accelerators = [d.name for d in tf.config.list_logical_devices() if d.device_type != "CPU"]
    return f"{os.cpu_count()} CPUs, devices: {accelerators or 'CPU only'}"


def print_comparison(result: dict, target: float) -> None:
    for kind, label in (("real", "training, real TFRecord pipeline"), ("synthetic", "training, synthetic in-memory   "),
                        ("pipeline", "real pipeline alone, no model   ")):
        rounds = ", ".join(f"{r:.1f}" for r in result["rounds"][kind])
        print(f"  {label}: {result[kind]:.1f} images/s  (rounds: {rounds})")
    print(f"  ratio real/synthetic: {result['ratio']:.3f} (target >= {target}); the pipeline alone delivers "
          f"{result['pipeline'] / result['synthetic']:.1f}x what the model consumes")
