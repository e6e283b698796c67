"""The tuning metric, reported through cloudml-hypertune: a JSON line per evaluation in the file
CLOUD_ML_HP_METRIC_FILE names (AI Platform's and Vertex AI's tuners, and `tune`, read it).

HyperTune keeps the last 100 reports in memory and rewrites its whole metrics file on every call, so there is
exactly one instance per metrics file in the process.
"""

import os

import hypertune
from absl import logging

from algorithms.runtime.events import Evaluation, TrainerCallback
from platforms.google_cloud import METRIC_FILE_VARIABLE

_instances: dict = {}


def _reporter() -> hypertune.HyperTune:
    path = os.environ.get(METRIC_FILE_VARIABLE, "")
    if path not in _instances:
        _instances[path] = hypertune.HyperTune()
    return _instances[path]


def report(metric_tag: str, value: float, global_step: int) -> None:
    _reporter().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=metric_tag, metric_value=float(value), global_step=int(global_step))
    logging.info("hypertune: %s=%.4f at step %d", metric_tag, value, global_step)


class HypertuneCallback(TrainerCallback):
    """Reports the task's metric after each evaluation (the trainer calls it on the chief only)."""

    def on_evaluation(self, evaluation: Evaluation) -> None:
        report(evaluation.metric_name, evaluation.metrics[evaluation.metric_name], evaluation.step)
