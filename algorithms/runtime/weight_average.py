"""An exponential moving average of the model's weights (--moving_average_decay), as Google's EfficientNet and
Model Garden trainers and Ultralytics keep one: evaluation, the best model's export and hypertune see the
averaged weights, training goes on with the raw ones, and checkpoints hold both.

Every float weight is averaged, batch-norm statistics included, so the averaged network is consistent with
itself. The decay warms up as min(decay, (1 + step) / (10 + step)) (Model Garden's dynamic decay): early on
the average follows the weights closely, so a short run averages its last ~10% of steps instead of holding on
to its random start as a fixed 0.9999 would.
"""

import contextlib

import keras
import tensorflow as tf


class WeightAverage:
    def __init__(self, model: keras.Model, decay: float):
        # Built in the strategy's scope: each average is mirrored like its weight. ONLY_FIRST_REPLICA: every
        # replica computes the same update (synchronised weights), and one of them is kept.
        self.decay = float(decay)
        self._weights = [w for w in model.weights if "float" in str(w.dtype)]
        self.averages = [tf.Variable(w.value, trainable=False, name=f"average_{i}",
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                         for i, w in enumerate(self._weights)]
        # One checkpoint object keyed like the model's (core/variables.py): readable, and stable across runs.
        self.trackable = tf.__internal__.tracking.AutoTrackable()
        for weight, average in zip(self._weights, self.averages):
            setattr(self.trackable, weight.path, average)

    def update(self, step) -> None:
        """After an optimizer step (`step` = the optimizer's iterations, already counting it); replica context."""
        step = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + step) / (10.0 + step))
        for weight, average in zip(self._weights, self.averages):
            average.assign_sub((1.0 - decay) * (average - tf.cast(weight.value, average.dtype)))

    def reset(self) -> None:
        """Starts the average at the current weights (a warm start, or a checkpoint written without averages)."""
        for weight, average in zip(self._weights, self.averages):
            average.assign(weight.value)

    @contextlib.contextmanager
    def swapped_in(self):
        """The averages in the model's weights for the block (evaluation, export), the trained weights after."""
        trained = [tf.identity(w.value) for w in self._weights]
        for weight, average in zip(self._weights, self.averages):
            weight.assign(average)
        try:
            yield
        finally:
            for weight, value in zip(self._weights, trained):
                weight.assign(value)
