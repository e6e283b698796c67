"""Picks the tf.distribute strategy from what the machine and the platform describe."""

import json
import os

import tensorflow as tf
from absl import logging

from algorithms.runtime.job_layout import tf_config


def _worker_count(config: dict) -> int:
    cluster = config.get("cluster") or {}
    return sum(len(cluster.get(name) or []) for name in ("chief", "master", "worker"))


def choose_strategy() -> tf.distribute.Strategy:
    """Several workers in TF_CONFIG: MultiWorkerMirrored; several GPUs: Mirrored; else the default (CPU/1 GPU)."""
    config = tf_config()
    if _worker_count(config) > 1:
        # AI Platform names the primary `master`; TensorFlow's resolver only knows `chief`.
        cluster = dict(config["cluster"])
        if "master" in cluster:
            cluster["chief"] = cluster.pop("master")
        task = dict(config.get("task") or {})
        if task.get("type") == "master":
            task["type"] = "chief"
        os.environ["TF_CONFIG"] = json.dumps({**config, "cluster": cluster, "task": task})
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        logging.info("strategy: MultiWorkerMirroredStrategy, %d replicas", strategy.num_replicas_in_sync)
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
        logging.info("strategy: MirroredStrategy over %d GPUs", len(gpus))
        return strategy
    logging.info("strategy: default (%s)", "one GPU" if gpus else "CPU")
    return tf.distribute.get_strategy()
