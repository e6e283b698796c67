"""The tuner's files on a gs:// job dir: the spec read from anywhere, the study's SQLite copy downloaded at start,
and the results, the logs and the study uploaded as the sweep goes (the tuner works on a local copy)."""

import os

from core.errors import UserInputError


def read_text(path: str) -> str:
    if "://" in path:
        import tensorflow as tf

        try:
            with tf.io.gfile.GFile(path) as handle:
                return handle.read()
        except tf.errors.OpError as error:
            raise UserInputError(f"cannot read the tuning spec {path}: {error.message}") from None
    try:
        with open(path) as handle:
            return handle.read()
    except OSError as error:
        raise UserInputError(f"cannot read the tuning spec {path}: {error.strerror}") from None


def download(remote: str, local: str) -> None:
    import tensorflow as tf

    if tf.io.gfile.exists(remote):
        tf.io.gfile.copy(remote, local, overwrite=True)


def upload_state(local_dir: str, job_dir: str, with_study: bool) -> None:
    """trials.csv, report.html, each trial's log.txt (and study.db when the study is the local SQLite file) to
    <job_dir>/tuning."""
    import tensorflow as tf

    target = f"{job_dir}/tuning"
    tf.io.gfile.makedirs(target)
    names = ["trials.csv", "report.html", *(["study.db"] if with_study else [])]
    names += [f"{d}/log.txt" for d in sorted(os.listdir(local_dir)) if d.startswith("trial_")]
    for name in names:
        source = os.path.join(local_dir, name)
        if os.path.exists(source):
            tf.io.gfile.makedirs(os.path.dirname(f"{target}/{name}"))
            tf.io.gfile.copy(source, f"{target}/{name}", overwrite=True)
