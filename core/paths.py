"""Paths that work for local files and gs:// alike, and one-line descriptions of their I/O errors."""


def join(base: str, *parts: str) -> str:
    """Path join that keeps gs:// URIs intact."""
    path = base.rstrip("/")
    for part in parts:
        path = f"{path}/{part.strip('/')}"
    return path


def gcs_bucket(path: str) -> str:
    """gs://bucket/a/b -> gs://bucket"""
    return "gs://" + path[len("gs://"):].split("/", 1)[0]


def missing_bucket_text(path: str) -> str:
    return (f"bucket {gcs_bucket(path)} does not exist or this job's credentials cannot see it "
            "(check the name, and grant the service account storage access)")


def describe_io_error(path: str, error) -> str:
    """One line for a tf.errors.OpError; a gs:// 404 usually means a missing bucket, so say that."""
    import tensorflow as tf  # only callers that already hold a TensorFlow error get here

    if path.startswith("gs://") and isinstance(error, tf.errors.NotFoundError):
        return missing_bucket_text(path)
    return error.message.splitlines()[0]
