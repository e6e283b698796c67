"""What every task's serving module shares. Each task's own module (its folder's serving.py) has exactly the
signature its built-in algorithm documents, so models deploy and are called as Google's were; they decode and
resize with dataloaders.image_ops, the same code the training pipeline uses, and hold only the model's weights
(a never-compiled copy: no optimizer slots in the SavedModel).
"""

import os
import tempfile

import keras
import tensorflow as tf

from core.variables import trackable_variables
from dataloaders.labels import LABELS_FILE_NAME


class ServingModule(tf.Module):
    """What every serving module shares: the model's variables (by path, see trackable_variables) and, when
    class names are known, labels.txt in the assets plus a `class_names` signature returning them in order.

    The Keras model itself is only captured by the serving closures, not tracked: TensorFlow's object graph
    would miss some of its variables, so the SavedModel holds `model`, the complete variable set, instead.
    """

    def __init__(self, model: keras.Model, class_names: list[str] | None, name: str):
        super().__init__(name=name)
        self.model = trackable_variables(model)
        self.names = None
        if class_names:
            # The asset's source file must outlive the exports of this module, not the job: removed with it.
            self._labels_folder = tempfile.TemporaryDirectory(prefix="labels-")
            labels_path = os.path.join(self._labels_folder.name, LABELS_FILE_NAME)
            with open(labels_path, "w") as handle:
                handle.write("\n".join(class_names) + "\n")
            self.labels_asset = tf.saved_model.Asset(labels_path)
            self.class_name_values = tf.constant(class_names)
            self.names = tf.function(lambda: {"class_names": tf.identity(self.class_name_values)}, input_signature=[])

    def with_class_names(self, signatures: dict) -> dict:
        if self.names is not None:
            signatures["class_names"] = self.names.get_concrete_function()
        return signatures
