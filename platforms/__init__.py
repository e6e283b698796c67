"""Each platform's contract in one module. What a platform tells a job (variables, files, its own command line)
becomes the same two things on all of them: our command line and a Placement (algorithms/runtime/placement.py:
cluster, trial, job name, fixed output directories, TPU). Nothing outside this package reads a platform's
variables or files.

google_cloud  AI Platform Training and Vertex AI (TF_CONFIG, CLOUD_ML_*, AIP_*, TPU_*); a job started by hand
              reads the same, finds nothing and is a one-process job
sagemaker     SageMaker's `IMAGE train`: /opt/ml (hyperparameters, channels, hosts) and its failure file
resnet_main   the TPU ResNet trainer's command line: its flags as aliases of ours
hypertune     the tuning metric, through cloudml-hypertune
serving       `IMAGE serve` on Vertex AI (AIP_STORAGE_URI, AIP_HTTP_PORT, AIP_*_ROUTE) and SageMaker (/opt/ml/model)
"""

import dataclasses

from absl import logging

from algorithms.runtime.placement import Placement
from platforms import google_cloud


@dataclasses.dataclass(frozen=True)
class PlatformJob:
    argv: list  # our command line
    placement: Placement


def failure_file(argv: list[str]) -> str | None:
    """Where the platform reads the reason of a failed job (SageMaker's output/failure), or None."""
    if argv and argv[0] == "train":
        from platforms import sagemaker

        return sagemaker.failure_file()
    return None


def write_failure(path: str, reason: str) -> None:
    from platforms import sagemaker

    sagemaker.write_failure(path, reason)


def job_from(argv: list[str], our_flags: set[str]) -> PlatformJob:
    """The job the platform describes: SageMaker's `train` reads its files; every other command line is ours,
    placed by the Google Cloud variables (none when started by hand). The cluster is published for TensorFlow."""
    placement = google_cloud.placement()
    if argv and argv[0] == "train":
        from platforms import sagemaker

        job = sagemaker.read_job(our_flags)
        # A TF_CONFIG given by hand wins over the cluster of SageMaker's hosts.
        placement = dataclasses.replace(placement, cluster=placement.cluster or job.placement.cluster,
                                        fixed_layout=job.placement.fixed_layout)
        argv = [*job.argv, *argv[1:]]
        logging.info("SageMaker job: %s", " ".join(argv))
    google_cloud.publish_cluster(placement.cluster)
    return PlatformJob(argv=list(argv), placement=placement)
