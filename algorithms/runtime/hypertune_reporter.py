"""Reports the tuning metric through cloudml-hypertune.

HyperTune keeps the last 100 reports in memory and rewrites its whole metrics file on every call, so there is
exactly one instance per metrics file (CLOUD_ML_HP_METRIC_FILE) in the process.
"""

import os

import hypertune
from absl import logging

_instances: dict = {}


def _reporter() -> hypertune.HyperTune:
    path = os.environ.get("CLOUD_ML_HP_METRIC_FILE", "")
    if path not in _instances:
        _instances[path] = hypertune.HyperTune()
    return _instances[path]


def report(metric_tag: str, value: float, global_step: int) -> None:
    _reporter().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=metric_tag, metric_value=float(value), global_step=int(global_step))
    logging.info("hypertune: %s=%.4f at step %d", metric_tag, value, global_step)
