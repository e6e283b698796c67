"""Picks the tf.distribute strategy from what the machine and the platform describe, and logs the choice.

auto: TPU_CONFIG (AI Platform cloud_tpu worker), TPU_NAME / a local TPU (Vertex TPU VM) -> TPUStrategy;
      several workers in TF_CONFIG (AI Platform CUSTOM tier, Vertex worker pools) -> MultiWorkerMirrored;
      several GPUs -> Mirrored; otherwise the default strategy (CPU or one GPU).
"""

import json
import os
import time

import tensorflow as tf
from absl import logging

from algorithms.runtime.job_layout import tf_config
from core.errors import UserInputError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker_mirrored", "tpu")
_PUBLIC_NAMES = {"default": "default strategy", "mirrored": "MirroredStrategy",
                 "multi_worker_mirrored": "MultiWorkerMirroredStrategy", "tpu": "TPUStrategy"}
# The AI Platform TPU node may still be provisioning when the job starts (its docs say to retry the connection).
TPU_CONNECT_ATTEMPTS = 40
TPU_CONNECT_DELAY_SECONDS = 10.0


def _worker_count(config: dict) -> int:
    cluster = config.get("cluster") or {}
    return sum(len(cluster.get(name) or []) for name in ("chief", "master", "worker"))


def tpu_target(env=None) -> dict | None:
    """TPUClusterResolver arguments for the TPU this job was given, or None when there is none."""
    env = os.environ if env is None else env
    raw = env.get("TPU_CONFIG", "").strip()
    if raw:
        try:
            config = json.loads(raw)
        except json.JSONDecodeError:
            raise UserInputError("TPU_CONFIG is set but is not valid JSON") from None
        if config.get("tpu_node_name"):
            return {"tpu": [config["tpu_node_name"]], "zone": config.get("zone"), "project": config.get("project"),
                    "job_name": "worker"}
    for name in ("KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_NAME"):
        if env.get(name, "").strip():
            return {"tpu": env[name].strip()}
    if env.get("TPU_ACCELERATOR_TYPE", "").strip() or (env is os.environ and os.path.exists("/dev/accel0")):
        return {"tpu": "local"}  # a TPU VM: the chips are attached to this host (Vertex AI)
    return None


def connect_tpu(target: dict, resolver_class=None, attempts=TPU_CONNECT_ATTEMPTS, delay=TPU_CONNECT_DELAY_SECONDS,
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


def _multi_worker_strategy(config: dict) -> tf.distribute.Strategy:
    # AI Platform names the primary `master`; TensorFlow's resolver only knows `chief`.
    cluster = dict(config.get("cluster") or {})
    if "master" in cluster:
        cluster["chief"] = cluster.pop("master")
    task = dict(config.get("task") or {})
    if task.get("type") == "master":
        task["type"] = "chief"
    os.environ["TF_CONFIG"] = json.dumps({**config, "cluster": cluster, "task": task})
    return tf.distribute.MultiWorkerMirroredStrategy()


def _mirrored_strategy() -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)


def choose_strategy(requested: str = "auto") -> tf.distribute.Strategy:
    if requested not in STRATEGIES:
        raise UserInputError(f"--distribution_strategy={requested!r} is not one of {', '.join(STRATEGIES)}")
    config, target = tf_config(), tpu_target()
    if requested == "auto":
        # Physical, not logical, devices: listing logical ones would start the runtime before MWMS exists.
        gpus = tf.config.list_physical_devices("GPU")
        if target:
            requested = "tpu"
        elif _worker_count(config) > 1:
            requested = "multi_worker_mirrored"
        elif len(gpus) > 1:
            requested = "mirrored"
        else:
            requested = "default"
    if requested == "tpu":
        if not target:
            raise UserInputError("--distribution_strategy=tpu but no TPU is described (TPU_CONFIG, TPU_NAME) or attached")
        strategy = _tpu_strategy(target)
    elif requested == "multi_worker_mirrored":
        strategy = _multi_worker_strategy(config)
    elif requested == "mirrored":
        strategy = _mirrored_strategy()
    else:
        strategy = tf.distribute.get_strategy()
    devices = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    logging.info("strategy: %s, %d replica(s) in sync on %s", _PUBLIC_NAMES[requested], strategy.num_replicas_in_sync,
                 "TPU" if requested == "tpu" else devices)
    return strategy
