"""What --training_data_path points at, looked at once per job: routing and the task's checks share the answer."""

import dataclasses

import tensorflow as tf

from dataloaders import tfrecord_files

FLAG = "training_data_path"


@dataclasses.dataclass(frozen=True)
class TrainingData:
    path: str
    class_folders: bool  # a folder of class sub-folders of images (SageMaker's layout), read without conversion
    files: tuple[str, ...] = ()  # the TFRecord files the glob matches, sorted
    first_record_path: str = ""
    first_example: tf.train.Example | None = None

    @property
    def first_record_keys(self) -> set[str]:
        return tfrecord_files.example_feature_keys(self.first_example) if self.first_example is not None else set()


def inspect_training_data(path: str | None) -> TrainingData:
    """Class folders, or TFRecords with their first record parsed; raises UserInputError naming the flag."""
    if path:
        # The converter's class-folder listing (Beam filesystems, imported only when a path may be a tree).
        from data import image_sources

        if image_sources.is_class_folder_tree(path):
            return TrainingData(path, class_folders=True)
    files = tfrecord_files.resolve_files(path, FLAG)
    first_path, example = tfrecord_files.first_example(files, FLAG)
    return TrainingData(path, class_folders=False, files=tuple(files), first_record_path=first_path,
                        first_example=example)
