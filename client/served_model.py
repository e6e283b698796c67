"""An exported model as its clients call it: loaded once, its `serving_default` fed encoded image bytes and keys,
as AI Platform Prediction would. Shared by `predict` (one process) and `batch_predict` (Beam workers)."""

from core.errors import UserInputError, first_line
from dataloaders.labels import LABELS_FILE_NAME, read_labels_file


class ServedModel:
    """`serving_default` of an exported model, the task it belongs to (classification or detection, from the
    signature's outputs) and its class names (the `class_names` signature, else labels.txt beside it)."""

    def __init__(self, model_dir: str):
        import tensorflow as tf

        from algorithms import registry

        try:
            self._model = tf.saved_model.load(model_dir)
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise UserInputError(f"--model_dir={model_dir} is not an exported model: {first_line(error)}") from None
        if "serving_default" not in self._model.signatures:
            raise UserInputError(f"--model_dir={model_dir} has no serving_default signature "
                                 f"(signatures: {', '.join(self._model.signatures) or 'none'})")
        self.serve = self._model.signatures["serving_default"]
        self.task = registry.task_of_signature(self.serve.structured_outputs)
        self.class_names = self._class_names(model_dir)

    def _class_names(self, model_dir: str) -> list[str] | None:
        import tensorflow as tf

        if "class_names" in self._model.signatures:
            return [n.decode() for n in self._model.signatures["class_names"]()["class_names"].numpy()]
        beside = f"{model_dir.rstrip('/')}/{LABELS_FILE_NAME}"
        return read_labels_file(beside) if tf.io.gfile.exists(beside) else None

    def name(self, label: int) -> str:
        """The name of 1-based `label` (the label itself as text when the model carries no names)."""
        names = self.class_names
        return names[label - 1] if names and 0 < label <= len(names) else str(label)

    def call(self, keys: list[str], contents: list[bytes]) -> list:
        """One row of outputs ({output name: numpy value}) per image, in order; an image the model cannot decode
        gets the reason (a str) instead, and the others are served all the same: when one image breaks a batch,
        each image of that batch is served on its own."""
        import tensorflow as tf

        try:
            outputs = self.serve(**{self.task.serving_image_input: tf.constant(contents)}, key=tf.constant(keys))
            outputs = {name: value.numpy() for name, value in outputs.items()}
            return [{name: value[i] for name, value in outputs.items()} for i in range(len(keys))]
        except tf.errors.InvalidArgumentError as error:
            if len(keys) == 1:
                return [f"not a decodable image (JPEG, PNG, GIF or BMP within the model's pixel limit): "
                        f"{first_line(error)}"]
            return [row for key, content in zip(keys, contents) for row in self.call([key], [content])]

    def format(self, row: dict, options: dict) -> list:
        """The task's predictions of one row (TaskSpec.format_prediction): a classifier's top classes, a
        detector's boxes (normalized [ymin, xmin, ymax, xmax]), each with its 1-based label and name."""
        return self.task.format_prediction(row, self.name, options)
