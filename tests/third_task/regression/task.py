"""The regression task: images -> one float, mean absolute error as the metric (lower is better)."""

import keras
import tensorflow as tf

from algorithms.regression.spec import SPEC, TARGET_KEY
from algorithms.runtime.checkpoints import restore_matching
from algorithms.runtime.task import Evaluator, Task
from core import feature_keys
from core.errors import UserInputError
from dataloaders import image_ops, record_pipeline, tfrecord_files
from export.signatures import ServingModule


class RegressionEvaluator(Evaluator):
    def reset(self) -> None:
        self.sums = {"absolute_error": 0.0, "count": 0.0}

    def update(self, outputs: dict) -> None:
        for key in self.sums:
            self.sums[key] += float(outputs[key])

    @property
    def num_images(self) -> int:
        return int(round(self.sums["count"]))

    def result(self) -> dict:
        return {"mean_absolute_error": self.sums["absolute_error"] / self.sums["count"],
                "eval_images": self.num_images}


class RegressionServing(ServingModule):
    """serving_default: image_bytes string [-1], key string [-1] -> value float32 [-1], key string [-1]."""

    def __init__(self, model: keras.Model, image_size: int, scale: float, max_pixels: int):
        super().__init__(model, None, name="regression_serving")

        def serve(image_bytes, key):
            images = tf.map_fn(lambda encoded: image_ops.preprocess_for_eval(encoded, image_size, max_pixels),
                               image_bytes, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
            return {"value": model(images, training=False)[:, 0] * scale, "key": tf.identity(key)}

        self.serve = tf.function(serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes"), tf.TensorSpec([None], tf.string, name="key")])

    def serving_signatures(self) -> dict:
        return {"serving_default": self.serve.get_concrete_function()}


class RegressionTask(Task):
    spec = SPEC

    def __init__(self, config):
        super().__init__(config)
        self.params = config.task_params
        self.evaluator = RegressionEvaluator()
        self.evaluator.reset()

    def preflight(self) -> None:
        self.check_data()

    def check_first_record(self, path, example, flag) -> None:
        keys = tfrecord_files.example_feature_keys(example)
        if not {feature_keys.IMAGE, TARGET_KEY} <= keys:
            raise UserInputError(f"--{flag}: the first record of {path} needs {feature_keys.IMAGE} and {TARGET_KEY}")

    def build_model(self) -> keras.Model:
        size = self.params.image_size
        inputs = keras.Input((size, size, 3))
        features = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        return keras.Model(inputs, keras.layers.Dense(1, name="value", dtype="float32")(features))

    def warm_start(self, model, checkpoint_prefix) -> None:
        restore_matching(model.variables, checkpoint_prefix)

    def _dataset(self, files, input_context, *, training, batch_size, counters, seed=0, skip_records=0):
        size = self.params.image_size
        blank = (tf.zeros([size, size, 3], tf.float32), tf.constant(0.0))

        def parse(serialized):
            features = tf.io.parse_single_example(serialized, {feature_keys.IMAGE: tf.io.VarLenFeature(tf.string),
                                                               TARGET_KEY: tf.io.VarLenFeature(tf.float32)})
            return {key: value.values for key, value in features.items()}

        def problem_text(path, index, features):
            return tf.cond(tf.size(features[TARGET_KEY]) == 1, lambda: tf.constant(""), lambda: tf.strings.join(
                [record_pipeline.where(path, index), f" needs one float in {TARGET_KEY}"]))

        def finish(image, features, element_seed):
            return image_ops.center_crop_and_resize(image, size), features[TARGET_KEY][0] / self.params.target_scale

        dataset = record_pipeline.records(files, training=training, seed=seed, skip_records=skip_records,
                                          input_context=input_context,
                                          num_records=0 if training else self.config.num_eval_images)
        dataset = record_pipeline.decode_counted(
            dataset, parse=parse, problem_text=problem_text, finish=finish, blank=lambda: blank, counters=counters,
            training=training, max_pixels=self.config.max_image_pixels,
            expected_kinds={feature_keys.IMAGE: "bytes_list", TARGET_KEY: "float_list"},
            seeds=record_pipeline.stream_seed(seed, input_context), first_position=skip_records)
        if training:
            dataset = dataset.batch(batch_size, drop_remainder=True)
        else:
            dataset = record_pipeline.full_batches_with_weights(dataset, batch_size, blank, input_context)
        return record_pipeline.finish(dataset, training)

    def train_dataset(self, input_context, start):
        return self._dataset(self.train_files, input_context, training=True, counters=self.train_counters,
                             batch_size=input_context.get_per_replica_batch_size(self.config.train_batch_size),
                             seed=start.seed, skip_records=start.skip_records)

    def eval_dataset(self, input_context):
        return self._dataset(self.eval_files, input_context, training=False, counters=self.eval_counters,
                             batch_size=input_context.get_per_replica_batch_size(self.config.eval_batch_size))

    def compute_loss(self, model, batch):
        images, targets = batch
        return tf.abs(model(images, training=True)[:, 0] - targets), self.weight_decay_loss(model)

    def eval_step(self, model, batch):
        images, targets, weights = batch
        error = tf.abs(model(images, training=False)[:, 0] - targets) * self.params.target_scale
        return {"absolute_error": tf.reduce_sum(weights * error), "count": tf.reduce_sum(weights)}

    def serving_module(self, model) -> tf.Module:
        return RegressionServing(model, self.params.image_size, self.params.target_scale, self.config.max_image_pixels)
