"""What --training_data_path holds, looked at once per job: routing, the flags resolved from the data
(--num_classes, --epochs) and the task's checks all ask the same object, so a source is listed once.

Two kinds today, each answering the same questions (what labels its examples carry, what class names and how
many training images it holds): TFRecords of tf.Examples, and a folder of class sub-folders of images
(SageMaker's layout, read without conversion).
"""

import abc

from core import feature_keys
from core.errors import UserInputError
from dataloaders import tfrecord_files

FLAG = "training_data_path"


class TrainingSource(abc.ABC):
    def __init__(self, path: str):
        self.path = path

    @property
    @abc.abstractmethod
    def label_keys(self) -> set[str]:
        """The tf.Example label keys its examples carry (a task is routed by them)."""

    @abc.abstractmethod
    def where(self, key: str) -> str:
        """Where `key` was seen, for the log line that says why a task was chosen."""

    def class_names(self, validation_split: float, seed: int) -> list[str] | None:
        """The class names the source itself holds (None: only a labels file can say)."""
        return None

    @abc.abstractmethod
    def count_training_images(self, validation_split: float, seed: int) -> int:
        """Training images (records), for --epochs."""


class TFRecordSource(TrainingSource):
    def __init__(self, path: str, files: list[str]):
        super().__init__(path)
        self.files = tuple(files)
        self.first_record_path, self.first_example = tfrecord_files.first_example(self.files, FLAG)

    @property
    def label_keys(self) -> set[str]:
        return tfrecord_files.example_feature_keys(self.first_example)

    def where(self, key: str) -> str:
        return f"{key} in the first record of {self.first_record_path}"

    def count_training_images(self, validation_split: float, seed: int) -> int:
        return tfrecord_files.count_all_records(list(self.files), FLAG)


class ClassFolderSource(TrainingSource):
    """Images in one sub-folder per class: the folder names are the labels (image-level, as image/class/label)."""

    def __init__(self, path: str):
        super().__init__(path)
        self._listings = {}

    @property
    def label_keys(self) -> set[str]:
        return {feature_keys.CLASS_LABEL}

    def where(self, key: str) -> str:
        return f"class folders in {self.path}"

    def listing(self, validation_split: float, seed: int) -> list:
        """data.image_sources.SourceImage items, each marked train or validation by a seeded split by path;
        listed once per (split, seed)."""
        from data import image_sources

        if (validation_split, seed) not in self._listings:
            try:
                self._listings[validation_split, seed] = image_sources.read_class_folders(self.path,
                                                                                         validation_split, seed)
            except image_sources.SourceError as error:
                raise UserInputError(str(error)) from None
        return self._listings[validation_split, seed]

    def class_names(self, validation_split: float, seed: int) -> list[str]:
        from data import image_sources

        return image_sources.derive_labels(self.listing(validation_split, seed))

    def count_training_images(self, validation_split: float, seed: int) -> int:
        return sum(item.split == "train" for item in self.listing(validation_split, seed))


def is_class_folder_tree(path: str) -> bool:
    # The converter's class-folder listing (Beam filesystems, imported only when a path may be a tree).
    from data import image_sources

    return image_sources.is_class_folder_tree(path)


def inspect_training_data(path: str | None) -> TrainingSource:
    """Class folders, or TFRecords with their first record parsed; raises UserInputError naming the flag."""
    if path and is_class_folder_tree(path):
        return ClassFolderSource(path)
    return TFRecordSource(path, tfrecord_files.resolve_files(path, FLAG))
