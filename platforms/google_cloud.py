"""AI Platform Training and Vertex AI custom training: everything they tell the job is in environment variables.

- TF_CONFIG: the cluster ({"cluster": {...}, "task": {"type", "index", "trial"}}); AI Platform names its
  primary `master`, which TensorFlow only knows as `chief`.
- CLOUD_ML_TRIAL_ID (or TF_CONFIG's task.trial): the tuning trial; CLOUD_ML_JOB_ID: the job's name.
- Vertex AI: AIP_MODEL_DIR and AIP_CHECKPOINT_DIR (already per trial) stand in for --job-dir;
  AIP_TENSORBOARD_LOG_DIR is where its TensorBoard reads events.
- TPUs: TPU_CONFIG (an AI Platform cloud_tpu worker), KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS or TPU_NAME, or a TPU VM
  (TPU_ACCELERATOR_TYPE, /dev/accel0; Vertex AI).
- The tuning metric goes to CLOUD_ML_HP_METRIC_FILE (platforms/hypertune.py).

A job started by hand sets none of them and is a one-process job with no trial.
"""

import json
import os

from algorithms.runtime.job_layout import JobLayout
from algorithms.runtime.placement import Placement
from core.errors import UserInputError
from core.paths import join

CLUSTER_VARIABLE = "TF_CONFIG"
TRIAL_VARIABLE = "CLOUD_ML_TRIAL_ID"
METRIC_FILE_VARIABLE = "CLOUD_ML_HP_METRIC_FILE"


def _tf_config(env) -> dict:
    raw = env.get(CLUSTER_VARIABLE, "")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise UserInputError(f"{CLUSTER_VARIABLE} is set but is not valid JSON") from None
    return value if isinstance(value, dict) else {}


def _with_tensorflows_names(config: dict) -> dict:
    """AI Platform names the primary `master`; TensorFlow's resolver only knows `chief`."""
    if not config:
        return {}
    cluster = dict(config.get("cluster") or {})
    if "master" in cluster:
        cluster["chief"] = cluster.pop("master")
    task = dict(config.get("task") or {})
    if task.get("type") == "master":
        task["type"] = "chief"
    return {**config, "cluster": cluster, "task": task}


def _trial_id(config: dict, env) -> str | None:
    trial = (config.get("task") or {}).get("trial")
    if trial in (None, ""):
        trial = env.get(TRIAL_VARIABLE)
    trial = str(trial).strip() if trial is not None else ""
    return trial or None


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


def _vertex_layout(env) -> JobLayout | None:
    model_dir = env.get("AIP_MODEL_DIR", "").rstrip("/")
    if not model_dir:
        return None
    base = model_dir.rsplit("/", 1)[0]
    return JobLayout(model_dir=model_dir, checkpoint_dir=env.get("AIP_CHECKPOINT_DIR", join(base, "checkpoints")).rstrip("/"),
                     report_dir=join(base, "report"),
                     tensorboard_dir=env.get("AIP_TENSORBOARD_LOG_DIR", join(base, "logs")).rstrip("/"))


def placement(env=None) -> Placement:
    """This process's place in its job, from the environment (os.environ when None)."""
    env = os.environ if env is None else env
    config = _tf_config(env)
    return Placement(cluster=_with_tensorflows_names(config), trial_id=_trial_id(config, env),
                     job_id=env.get("CLOUD_ML_JOB_ID", "").strip() or "local", default_layout=_vertex_layout(env),
                     tensorboard_dir=env.get("AIP_TENSORBOARD_LOG_DIR", "").rstrip("/") or None, tpu=tpu_target(env))


def publish_cluster(cluster: dict) -> None:
    """TensorFlow's MultiWorkerMirroredStrategy reads the cluster from TF_CONFIG: give it the one the job runs
    in, with TensorFlow's names (a cluster of one process leaves TF_CONFIG as it is)."""
    if cluster:
        os.environ[CLUSTER_VARIABLE] = json.dumps(cluster)


def trial_environment(env: dict, trial_number: int, metric_file: str) -> dict:
    """The environment of a tuning trial's job process: its trial id and metric file, no cluster of its own
    (the tuner's TF_CONFIG describes the tuner, not the trial)."""
    trial_env = {key: value for key, value in env.items() if key != CLUSTER_VARIABLE}
    trial_env.update({TRIAL_VARIABLE: str(trial_number), METRIC_FILE_VARIABLE: metric_file})
    return trial_env
