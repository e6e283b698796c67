"""Where a job's outputs go: one module computes every path, for local and gs:// alike.

<job-dir>/model, checkpoints, report and logs; a tuning trial gets model/trial_<id>, checkpoints/trial_<id>, ...
so trials sharing one job dir never mix, as on AI Platform. A platform may fix the directories itself or give
them when there is no --job-dir (the job's Placement, from platforms/).
"""

import dataclasses

from algorithms.runtime.placement import Placement
from core.errors import UserInputError
from core.paths import describe_io_error, gcs_bucket, join, missing_bucket_text


@dataclasses.dataclass(frozen=True)
class JobLayout:
    model_dir: str  # the best SavedModel
    checkpoint_dir: str
    report_dir: str
    tensorboard_dir: str

    @classmethod
    def create(cls, job_dir: str | None, placement: Placement | None = None) -> "JobLayout":
        """The layout of `job_dir` for this process's trial; `placement` says what the platform fixes (None: a
        plain local job)."""
        placement = placement or Placement()
        if placement.fixed_layout is not None:
            return placement.fixed_layout
        suffix = (f"trial_{placement.trial_id}",) if placement.trial_id else ()
        if job_dir:
            return cls(model_dir=join(job_dir, "model", *suffix), checkpoint_dir=join(job_dir, "checkpoints", *suffix),
                       report_dir=join(job_dir, "report", *suffix),
                       tensorboard_dir=placement.tensorboard_dir or join(job_dir, "logs", *suffix))
        if placement.default_layout is not None:
            return placement.default_layout
        raise UserInputError("--job-dir is required (the output root for the model and checkpoints, local or gs://), "
                             "unless the platform gives the output directories (Vertex AI's model directory)")

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
