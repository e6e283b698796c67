"""Class names: a labels file has one name per line; line i names label i+1 (probabilities index i)."""

import tensorflow as tf
from absl import logging

from core.errors import UserInputError
from core.paths import join

LABELS_FILE_NAME = "labels.txt"


def read_labels_file(path: str) -> list[str]:
    try:
        with tf.io.gfile.GFile(path, "r") as handle:
            return [line.strip() for line in handle.read().splitlines() if line.strip()]
    except tf.errors.OpError as error:
        raise UserInputError(f"the labels file {path} cannot be read: {error.message.splitlines()[0]}") from None


def load_class_names(labels_file: str | None, training_files: list[str], num_classes: int) -> list[str] | None:
    """The class names from --labels_file, else from a labels.txt next to the training data, else None."""
    if labels_file:
        names = read_labels_file(labels_file)
        if len(names) != num_classes:
            raise UserInputError(f"--labels_file={labels_file} has {len(names)} non-empty lines but --num_classes="
                                 f"{num_classes}; it needs one class name per line, label 1 first")
        return names
    beside_data = join(training_files[0].rpartition("/")[0] or ".", LABELS_FILE_NAME)
    if tf.io.gfile.exists(beside_data):
        names = read_labels_file(beside_data)
        if len(names) == num_classes:
            logging.info("class names from %s", beside_data)
            return names
        logging.warning("ignoring %s: %d names for %d classes", beside_data, len(names), num_classes)
    return None
