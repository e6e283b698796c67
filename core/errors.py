"""Errors the user can fix: printed as one clear line, never as a TensorFlow stack trace."""

import difflib

DATA_ERROR_MARKER = "DataError: "


class UserInputError(Exception):
    """A flag value, a path or the data is wrong; the message names it and says how to fix it."""


class DataError(UserInputError):
    """A training or validation record is unusable (message names the file and record)."""


class DivergedError(UserInputError):
    """The loss or an evaluation metric stopped being a finite number; nothing of that step was kept."""


class OutOfSpaceError(UserInputError):
    """The job dir's disk or quota is full (message names the path and the bytes needed)."""


class StorageError(UserInputError):
    """Writing to the job dir kept failing after the storage client's retries (message names the object)."""


def first_line(error: Exception) -> str:
    """An error's first line (TensorFlow's errors: their message without the op's trace), at most 200 characters."""
    return ((getattr(error, "message", None) or str(error)).strip().splitlines() or [type(error).__name__])[0][:200]


def op_error_reason(error: Exception) -> str:
    """What a TensorFlow op error says went wrong, without its framing ("Graph execution error:", where the
    node was defined, "[[{{node ...}}]]"), at most 200 characters."""
    framing = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File \"")
    for line in (getattr(error, "message", None) or str(error)).splitlines():
        line = line.strip()
        if line and not line.startswith(framing) and not line.endswith("(most recent call last):"):
            return line[:200]
    return first_line(error)


def last_line(error: Exception) -> str:
    """The root cause of a (Beam-wrapped) error: its message's last non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return lines[-1][:500]


def nearest(name: str, known) -> str:
    """ " (did you mean X?)" for the known name closest to a misspelled one, or "" when none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def data_error_from_tf_message(message: str):
    """Extracts our own DataError text from a TensorFlow error raised inside a tf.data pipeline.

    The input pipeline asserts with messages that start with DATA_ERROR_MARKER; TensorFlow wraps
    them in several lines of context. Returns None when the error is not one of ours.
    """
    start = message.find(DATA_ERROR_MARKER)
    if start < 0:
        return None
    text = message[start + len(DATA_ERROR_MARKER):]
    # An assertion ends our text with "]" and a newline or tab; an exception raised in a py_function, with a
    # newline. The earliest of them ends it (texts may hold brackets, never a newline).
    ends = [end for end in (text.find(terminator) for terminator in ("]\n", "]\t", "\n")) if end >= 0]
    if ends:
        text = text[:min(ends)]
    elif text.endswith("]"):
        text = text[:-1]
    # The assertion prints the message as a quoted string literal: undo its escaping of quotes.
    return DataError(text.strip().replace("\\'", "'").replace('\\"', '"'))
