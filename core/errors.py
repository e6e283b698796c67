"""Errors the user can fix: printed as one clear line, never as a TensorFlow stack trace."""

DATA_ERROR_MARKER = "DataError: "


class UserInputError(Exception):
    """A flag value, a path or the data is wrong; the message names it and says how to fix it."""


class DataError(UserInputError):
    """A training or validation record is unusable (message names the file and record)."""


class DivergedError(UserInputError):
    """The loss or an evaluation metric stopped being a finite number; nothing of that step was kept."""


class OutOfSpaceError(UserInputError):
    """The job dir's disk or quota is full (message names the path and the bytes needed)."""


def data_error_from_tf_message(message: str):
    """Extracts our own DataError text from a TensorFlow error raised inside a tf.data pipeline.

    The input pipeline asserts with messages that start with DATA_ERROR_MARKER; TensorFlow wraps
    them in several lines of context. Returns None when the error is not one of ours.
    """
    start = message.find(DATA_ERROR_MARKER)
    if start < 0:
        return None
    text = message[start + len(DATA_ERROR_MARKER):]
    for terminator in ("]\n", "]\t", "]"):
        end = text.find(terminator)
        if end >= 0:
            text = text[:end]
            break
    return DataError(text.strip())
