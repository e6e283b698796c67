"""A training job's events, for whoever subscribes: the trainer runs the loop, checkpoints and exports the best
model; the report, TensorBoard, the platform's metric reporting (platforms/hypertune.py) and early stopping
listen as TrainerCallbacks."""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One finished evaluation, after the best model was checkpointed and exported."""

    step: int
    train_loss: float | None  # mean over the last logged interval; None before any
    metrics: dict
    metric_name: str  # the task's metric, compared by its goal
    improved: bool  # this evaluation is the new best model
    best_value: float
    best_step: int


@dataclasses.dataclass(frozen=True)
class TrainingEnd:
    """The job's end (max_steps, early stop, or evaluation only): what its report says."""

    step: int
    metric_name: str
    best_value: float
    best_step: int
    model_dir: str
    seed: str  # "N (how it was chosen)"
    duration: str
    serving: tf.Module | None  # the best model's serving module (None before the first export)


class TrainerCallback:
    """Every method is optional; a callback that raises fails the job, so best-effort ones catch their own."""

    def on_evaluation(self, evaluation: Evaluation) -> None:
        """After each evaluation."""

    def stop_reason(self, evaluation: Evaluation) -> str | None:
        """Why training should end after this evaluation; None: go on. Asked on every worker alike."""
        return None

    def on_training_end(self, end: TrainingEnd) -> None:
        """Once, after the last step."""


class EarlyStopping(TrainerCallback):
    """Stops after `patience` evaluations without a better metric (0 = never). Counted from the best step, which
    the checkpoint holds, so the count survives a restart."""

    def __init__(self, patience: int, steps_per_evaluation: int, max_steps: int):
        self.patience, self.steps_per_evaluation, self.max_steps = patience, steps_per_evaluation, max_steps

    def stop_reason(self, evaluation: Evaluation) -> str | None:
        if not self.patience or evaluation.step >= self.max_steps:
            return None
        since_best = (evaluation.step - evaluation.best_step) // self.steps_per_evaluation
        if since_best < self.patience:
            return None
        return (f"{since_best} evaluations without a better {evaluation.metric_name} (best "
                f"{evaluation.best_value:.4f} at step {evaluation.best_step})")


class EvaluationScalars(TrainerCallback):
    """Each evaluation's metrics as TensorBoard scalars (eval/<name>)."""

    def __init__(self, writer):
        self.writer = writer

    def on_evaluation(self, evaluation: Evaluation) -> None:
        with self.writer.as_default(step=evaluation.step):
            for name, value in evaluation.metrics.items():
                tf.summary.scalar(f"eval/{name}", value)
        self.writer.flush()
