"""Picks the tf.distribute strategy from what the machine and the platform describe, and logs the choice.

auto: a TPU given to the job (an AI Platform cloud_tpu worker, a Vertex TPU VM) -> TPUStrategy;
      several workers in the cluster (AI Platform CUSTOM tier, Vertex worker pools, SageMaker hosts)
      -> MultiWorkerMirrored; several GPUs -> Mirrored; otherwise the default strategy (CPU or one GPU).
"""

import time

import tensorflow as tf
from absl import logging

from algorithms.runtime.placement import Placement
from core.errors import UserInputError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker_mirrored", "tpu")
_PUBLIC_NAMES = {"default": "default strategy", "mirrored": "MirroredStrategy",
                 "multi_worker_mirrored": "MultiWorkerMirroredStrategy", "tpu": "TPUStrategy"}
# The AI Platform TPU node may still be provisioning when the job starts (its docs say to retry the connection).
CONNECT_ATTEMPTS = 40
CONNECT_DELAY_SECONDS = 10.0


def connect_tpu(target: dict, resolver_class=None, attempts=CONNECT_ATTEMPTS, delay=CONNECT_DELAY_SECONDS,
                sleep=time.sleep):
    """A TPUClusterResolver whose cluster has its workers, retrying while the TPU is provisioned."""
    resolver_class = resolver_class or tf.distribute.cluster_resolver.TPUClusterResolver
    last_error = None
    for attempt in range(1, attempts + 1):
        try:
            resolver = resolver_class(**target)
            if target.get("tpu") == "local" or (resolver.cluster_spec().as_dict() or {}).get("worker"):
                return resolver
            last_error = "the TPU cluster has no workers yet"
        except (ValueError, RuntimeError, tf.errors.OpError) as error:  # "not yet ready", API errors
            last_error = str(error).splitlines()[0] if str(error) else type(error).__name__
        logging.info("TPU %s not ready (attempt %d/%d): %s", target.get("tpu"), attempt, attempts, last_error)
        if attempt < attempts:
            sleep(delay)
    raise UserInputError(f"the TPU {target.get('tpu')} did not become ready after {attempts} attempts: {last_error}")


def _tpu_strategy(target: dict) -> tf.distribute.Strategy:
    resolver = connect_tpu(target)
    if target.get("tpu") != "local":
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker_strategy() -> tf.distribute.Strategy:
    # It reads the cluster the platform published (platforms/), with TensorFlow's names.
    return tf.distribute.MultiWorkerMirroredStrategy()


def _mirrored_strategy() -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)


def choose_strategy(requested: str = "auto", placement: Placement | None = None) -> tf.distribute.Strategy:
    """`placement` (from platforms/) describes the cluster and the TPU; None: a plain one-process job."""
    if requested not in STRATEGIES:
        raise UserInputError(f"--distribution_strategy={requested!r} is not one of {', '.join(STRATEGIES)}")
    placement = placement or Placement()
    target = placement.tpu
    if requested == "auto":
        # Physical, not logical, devices: listing logical ones would start the runtime before MWMS exists.
        gpus = tf.config.list_physical_devices("GPU")
        if target:
            requested = "tpu"
        elif placement.worker_count > 1:
            requested = "multi_worker_mirrored"
        elif len(gpus) > 1:
            requested = "mirrored"
        else:
            requested = "default"
    if requested == "tpu":
        if not target:
            raise UserInputError("--distribution_strategy=tpu but the platform describes no TPU and none is attached")
        strategy = _tpu_strategy(target)
    elif requested == "multi_worker_mirrored":
        strategy = _multi_worker_strategy()
    elif requested == "mirrored":
        strategy = _mirrored_strategy()
    else:
        strategy = tf.distribute.get_strategy()
    devices = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    logging.info("strategy: %s, %d replica(s) in sync on %s", _PUBLIC_NAMES[requested], strategy.num_replicas_in_sync,
                 "TPU" if requested == "tpu" else devices)
    return strategy
