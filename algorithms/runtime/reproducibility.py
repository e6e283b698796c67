"""One seed per run, and everything random drawn from it: weights, dropout, data order and augmentation.

The seed is --seed, else the one this job recorded when it first started (a resumed job keeps its sequence),
else a new one, drawn, logged and recorded in the checkpoint dir (`seed.json`), so that any run can be
repeated with `--seed=<it>`. From it:
- Python's, NumPy's, TensorFlow's and Keras' global seeds (weight initialisation, dropout's seed generators,
  whose states are checkpointed with the model);
- the shuffles of the input pipeline, and one stateless seed per record for its augmentation, folded from the
  seed and the record's position in the stream (dataloaders.record_pipeline): the same record at the same
  position gets the same crop whichever thread decodes it, so parallel decoding stays repeatable;
- where a resumed run picks up the stream: the records an uninterrupted run would have trained on by then are
  skipped (read, not decoded), so it goes on with the same records and the same crops.
TensorFlow's op determinism (--deterministic_ops) makes the ops themselves repeatable.
"""

import dataclasses
import os

import keras
import tensorflow as tf
from absl import logging

from algorithms.runtime import cpu_kernels, job_records
from core.paths import join
from core.seeds import MAX_SEED, draw_seed, wants_deterministic_ops

SEED_FILE = "seed.json"


@dataclasses.dataclass(frozen=True)
class RunSeed:
    seed: int
    source: str  # "--seed", "recorded" (by the job's earlier run) or "drawn"
    deterministic_ops: bool


@dataclasses.dataclass(frozen=True)
class StreamStart:
    """Where one input pipeline's training stream starts: its seed, and how many records of the stream an
    uninterrupted run would already have trained on (skipped when a job resumes)."""

    seed: int
    skip_records: int = 0


def _read_recorded(directory: str) -> int | None:
    seed = (job_records.read_record(directory, SEED_FILE, "seed") or {}).get("seed")
    return seed if isinstance(seed, int) and 0 <= seed <= MAX_SEED else None


def _record(directory: str, run_seed: RunSeed) -> None:
    job_records.write_record(directory, SEED_FILE, {"seed": run_seed.seed,
                                                    "deterministic_ops": run_seed.deterministic_ops}, "seed")


def resolve_seed(flag_seed: int | None, deterministic_ops: str, checkpoint_dir: str, chief: bool) -> RunSeed:
    """The run's seed (see the module docstring), logged; the chief records it in checkpoint_dir."""
    recorded = _read_recorded(checkpoint_dir)
    if flag_seed is not None:
        seed, source = flag_seed, "--seed"
        if recorded is not None and recorded != flag_seed:
            logging.warning("--seed=%d differs from the seed this job started with (%d): the resumed run draws its "
                            "data order and augmentation from %d", flag_seed, recorded, flag_seed)
    elif recorded is not None:
        seed, source = recorded, "recorded"
    else:
        seed, source = draw_seed(), "drawn"
    run_seed = RunSeed(seed, source, wants_deterministic_ops(flag_seed is not None, deterministic_ops))
    ops = f"op determinism {'on' if run_seed.deterministic_ops else 'off'}, " + (
        "oneDNN's CPU kernels" if onednn_enabled() else "TensorFlow's own CPU kernels")
    if source == "drawn":
        logging.info("seed %d (drawn; rerun with --seed=%d to repeat this run), %s", seed, seed, ops)
    else:
        logging.info("seed %d (%s), %s", seed, "from --seed" if source == "--seed" else
                     f"recorded in {join(checkpoint_dir, SEED_FILE)} by this job's first run", ops)
    if chief and recorded != seed:
        _record(checkpoint_dir, run_seed)
    return run_seed


def onednn_enabled() -> bool:
    """Whether this process runs oneDNN's CPU kernels (TensorFlow decided it at import)."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # no public API tells it

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def configure_deterministic_ops(flag_seed: int | None, deterministic_ops: str) -> None:
    """Before TensorFlow's runtime starts (so before the distribution strategy exists): op determinism, and one
    inter-op thread. The second because a gradient summed from several uses of one weight (RetinaNet's heads,
    shared by every pyramid level) is accumulated in the order its parts finish when independent ops run in
    parallel (a graph rewrite that op determinism leaves on): measured here, the class head's gradients
    differed between two calls on the same batch. Ops still use every core inside themselves."""
    if not wants_deterministic_ops(flag_seed is not None, deterministic_ops):
        return
    tf.config.experimental.enable_op_determinism()
    if onednn_enabled():  # entrypoint.py turns it off for such runs (cpu_kernels), unless the user forced it on
        logging.warning("op determinism: oneDNN's CPU kernels are on (TF_ENABLE_ONEDNN_OPTS=%s), and their filter "
                        "gradients are not repeatable; set TF_ENABLE_ONEDNN_OPTS=0 for a run that repeats bit for bit",
                        os.environ.get(cpu_kernels.ONEDNN_VARIABLE, "unset"))
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # a second job in a process whose runtime already started (tests, notebooks)
        logging.warning("op determinism: TensorFlow's runtime had already started in this process, so independent "
                        "ops may still run in parallel; results can differ in the last bits between runs")


def seed_everything(run_seed: RunSeed) -> None:
    """Global seeds (Python, NumPy, TensorFlow, Keras) before any variable exists."""
    keras.utils.set_random_seed(run_seed.seed)


def records_already_trained(step: int, global_batch_size: int, input_context: tf.distribute.InputContext) -> int:
    """Records of one input pipeline's stream that the first `step` steps consumed (each pipeline feeds an equal
    share of every global batch)."""
    return step * global_batch_size // max(1, input_context.num_input_pipelines)
