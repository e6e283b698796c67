"""Where a job's outputs go: one module computes every path, for local and gs:// alike.

<job-dir>/model, checkpoints, report and logs; a tuning trial gets model/trial_<id>, checkpoints/trial_<id>, ...
so trials sharing one job dir never mix, as on AI Platform. Vertex AI passes AIP_* directories instead.
"""

import dataclasses
import json
import os

from core.errors import UserInputError
from core.paths import describe_io_error, gcs_bucket, join, missing_bucket_text


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

    @classmethod
    def create(cls, job_dir: str | None) -> "JobLayout":
        trial = trial_id()
        suffix = (f"trial_{trial}",) if trial else ()
        if job_dir:
            return cls(model_dir=join(job_dir, "model", *suffix), checkpoint_dir=join(job_dir, "checkpoints", *suffix),
                       report_dir=join(job_dir, "report", *suffix),
                       tensorboard_dir=os.environ.get("AIP_TENSORBOARD_LOG_DIR", "").rstrip("/")
                       or join(job_dir, "logs", *suffix))
        # Vertex AI passes no --job-dir; its AIP_* directories are already per trial.
        model_dir = os.environ.get("AIP_MODEL_DIR")
        if model_dir:
            base = model_dir.rstrip("/").rsplit("/", 1)[0]
            return cls(model_dir=model_dir.rstrip("/"),
                       checkpoint_dir=os.environ.get("AIP_CHECKPOINT_DIR", join(base, "checkpoints")).rstrip("/"),
                       report_dir=join(base, "report"),
                       tensorboard_dir=os.environ.get("AIP_TENSORBOARD_LOG_DIR", join(base, "logs")).rstrip("/"))
        raise UserInputError("--job-dir is required (the output root for the model and checkpoints, local or gs://), "
                             "unless AIP_MODEL_DIR is set as on Vertex AI")

    def check_writable(self) -> None:
        """Fails now, not at the first export, when the job dir cannot be written (a bucket typo, no permission)."""
        import tensorflow as tf

        path = self.checkpoint_dir
        # TensorFlow's GCS makedirs never returns when the bucket is missing: check the bucket first.
        if path.startswith("gs://") and not tf.io.gfile.exists(gcs_bucket(path)):
            raise UserInputError(f"cannot write the job dir {path}: {missing_bucket_text(path)}")
        try:
            tf.io.gfile.makedirs(path)
        except tf.errors.OpError as error:
            raise UserInputError(f"cannot write the job dir {path}: {describe_io_error(path, error)}") from None
