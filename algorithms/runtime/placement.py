"""Where this process stands in its job, as the platform that started it says: the same shape on every
platform. platforms/ builds it from the platform's own files and variables; nothing in the runtime reads them.
"""

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Placement:
    # The cluster in the form TensorFlow reads it, {"cluster": {type: [host:port]}, "task": {"type", "index"}},
    # with AI Platform's `master` already named `chief`; {} for a job of one process.
    cluster: dict = dataclasses.field(default_factory=dict)
    trial_id: str | None = None  # the tuning trial; None outside tuning
    job_id: str = "local"  # the platform's name of the job (a label of the exported model)
    # Output directories (a JobLayout) the platform fixes whatever the flags say (SageMaker's /opt/ml).
    fixed_layout: Any = None
    # Output directories (a JobLayout) the platform gives when no --job-dir is (Vertex AI's model and checkpoint directories).
    default_layout: Any = None
    tensorboard_dir: str | None = None  # where the platform shows TensorBoard events, if it does (Vertex AI)
    tpu: dict | None = None  # TPUClusterResolver arguments of the TPU given to this job; None: no TPU

    @property
    def worker_count(self) -> int:
        cluster = self.cluster.get("cluster") or {}
        return sum(len(cluster.get(name) or []) for name in ("chief", "worker"))

    @property
    def is_chief(self) -> bool:
        """Only the chief exports, reports metrics and keeps the real checkpoints: the `chief`, else worker 0 of
        a cluster without one; a process outside any cluster is its own chief."""
        task = self.cluster.get("task") or {}
        task_type = task.get("type")
        if not task_type or task_type == "chief":
            return True
        has_chief = bool((self.cluster.get("cluster") or {}).get("chief"))
        return task_type == "worker" and not has_chief and int(task.get("index", 0)) == 0
