"""Where a job's outputs go: one module computes every path, for local and gs:// alike (decision 4)."""

import dataclasses
import json
import os

from algorithms.runtime.errors import UserInputError


def join(base: str, *parts: str) -> str:
    """Path join that keeps gs:// URIs intact."""
    path = base.rstrip("/")
    for part in parts:
        path = f"{path}/{part.strip('/')}"
    return path


def tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise UserInputError("TF_CONFIG is set but is not valid JSON") from None
    return value if isinstance(value, dict) else {}


def trial_id() -> str | None:
    """The tuning trial id: TF_CONFIG task.trial (AI Platform), else CLOUD_ML_TRIAL_ID; None outside tuning."""
    trial = (tf_config().get("task") or {}).get("trial")
    if trial in (None, ""):
        trial = os.environ.get("CLOUD_ML_TRIAL_ID")
    trial = str(trial).strip() if trial is not None else ""
    return trial or None


def is_chief() -> bool:
    """Only the chief exports, reports metrics and keeps the real checkpoints."""
    config = tf_config()
    task = config.get("task") or {}
    task_type = task.get("type")
    if not task_type:
        return True
    if task_type in ("chief", "master"):
        return True
    cluster = config.get("cluster") or {}
    has_chief = bool(cluster.get("chief") or cluster.get("master"))
    return task_type == "worker" and not has_chief and int(task.get("index", 0)) == 0


@dataclasses.dataclass(frozen=True)
class JobLayout:
    model_dir: str  # the best SavedModel
    checkpoint_dir: str
    report_dir: str
    tensorboard_dir: str
    trial: str | None

    @classmethod
    def create(cls, job_dir: str | None) -> "JobLayout":
        trial = trial_id()
        suffix = (f"trial_{trial}",) if trial else ()
        if job_dir:
            return cls(model_dir=join(job_dir, "model", *suffix), checkpoint_dir=join(job_dir, "checkpoints", *suffix),
                       report_dir=join(job_dir, "report", *suffix),
                       tensorboard_dir=os.environ.get("AIP_TENSORBOARD_LOG_DIR", "").rstrip("/")
                       or join(job_dir, "logs", *suffix), trial=trial)
        # Vertex AI passes no --job-dir; its AIP_* directories are already per trial.
        model_dir = os.environ.get("AIP_MODEL_DIR")
        if model_dir:
            base = model_dir.rstrip("/").rsplit("/", 1)[0]
            return cls(model_dir=model_dir.rstrip("/"),
                       checkpoint_dir=os.environ.get("AIP_CHECKPOINT_DIR", join(base, "checkpoints")).rstrip("/"),
                       report_dir=join(base, "report"),
                       tensorboard_dir=os.environ.get("AIP_TENSORBOARD_LOG_DIR", join(base, "logs")).rstrip("/"),
                       trial=trial)
        raise UserInputError("--job-dir is required (the output root for the model and checkpoints, local or gs://), "
                             "unless AIP_MODEL_DIR is set as on Vertex AI")
