"""Every variable of a Keras model as one TensorFlow checkpoint object, for checkpoints and SavedModels."""

import keras
import tensorflow as tf


def trackable_variables(model: keras.Model) -> tf.__internal__.tracking.AutoTrackable:
    """Every variable of a Keras model, as one checkpoint object keyed by the variable's Keras path
    ("class_subnet/conv2d_0/kernel").

    Checkpoints and SavedModels hold this instead of the model itself: TensorFlow's object graph does not
    reach the variables of Keras 3 layers kept in lists or dicts made in build() (KerasHub's FPN and
    prediction heads), so it would silently leave them out. Paths also make warm starts readable. A bare
    AutoTrackable, not a tf.train.Checkpoint: that would put its own save_counter into every SavedModel.
    """
    container = tf.__internal__.tracking.AutoTrackable()
    seen = set()
    for variable in model.variables:
        if variable.path in seen:
            raise ValueError(f"two variables of {model.name} share the path {variable.path}")
        seen.add(variable.path)
        setattr(container, variable.path, variable)
    return container
