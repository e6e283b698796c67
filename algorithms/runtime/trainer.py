"""The one training loop every task runs: train continuously, evaluate every N steps, report the metric,
export the best model atomically, checkpoint, and resume from the job dir after a restart.

A custom loop rather than Keras `fit`: `fit` breaks under MultiWorkerMirroredStrategy in Keras 3.15.
"""

import contextlib
import dataclasses
import errno
import math
import signal
import tempfile
import time

import tensorflow as tf
from absl import logging

from algorithms.runtime import precision, reproducibility
from algorithms.runtime.checkpoints import (
    CHECKPOINT_PREFIX,
    checkpoints_on_disk,
    remove_stale_temporaries,
    resolve_checkpoint_prefix,
    restore_newest_usable,
)
from algorithms.runtime.config import JobConfig
from algorithms.runtime.events import EarlyStopping, Evaluation, EvaluationScalars, TrainingEnd
from algorithms.runtime.job_layout import JobLayout
from algorithms.runtime.job_lock import JobLock
from algorithms.runtime.optimizers import build_optimizer
from algorithms.runtime.preemption import CHUNK_SECONDS, Preempted, StopSignals
from algorithms.runtime.report import ReportCallback, TrainingReport
from algorithms.runtime.schedules import WarmupDecaySchedule
from algorithms.runtime.strategy import choose_strategy
from algorithms.runtime.task import Task
from algorithms.runtime.weight_average import WeightAverage
from core.errors import (
    DataError,
    DivergedError,
    OutOfSpaceError,
    StorageError,
    UserInputError,
    data_error_from_tf_message,
)
from core.variables import trackable_variables
from dataloaders.record_pipeline import SKIPS_LOGGED_EACH
from export.atomic import (
    export_saved_model,
    exported_step,
    publish_copy,
    recover_interrupted_swap,
    remove_unfinished_export,
)

MAX_CHECKPOINTS_KEPT = 3
# Undecodable images are only judged once this many training records have been read.
MIN_RECORDS_FOR_SKIP_CHECK = 200
# What a storage backend raises once its own retries are spent (a bucket answering 503, dropped connections).
_STORAGE_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                   tf.errors.InternalError, tf.errors.UnknownError, tf.errors.PermissionDeniedError)


@dataclasses.dataclass
class RunSummary:
    metric_name: str
    final_step: int
    best_metric: float
    best_step: int
    last_metrics: dict
    model_dir: str
    first_loss: float | None
    losses: list  # (step, mean loss over the logged interval)


@contextlib.contextmanager
def data_errors_as_user_errors():
    """Our own in-pipeline assertions (DataError: ...) leave as DataError, not as a TensorFlow trace."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.FailedPreconditionError) as error:
        data_error = data_error_from_tf_message(error.message)
        if data_error is not None:
            raise data_error from None
        raise


class Trainer:
    def __init__(self, task: Task, config: JobConfig, strategy: tf.distribute.Strategy, layout: JobLayout,
                 lock: JobLock | None = None, worker_checkpoint_dir: str | None = None,
                 callbacks: tuple = ()):
        self.task, self.config, self.strategy, self.layout, self.lock = task, config, strategy, layout, lock
        self.chief = config.placement.is_chief
        self.worker_checkpoint_dir = worker_checkpoint_dir
        self._eval_data = None
        # Before any variable exists: the initial weights and dropout's seed generators come from the seed.
        self.run_seed = reproducibility.resolve_seed(config.seed, config.deterministic_ops, layout.checkpoint_dir,
                                                     self.chief)
        reproducibility.seed_everything(self.run_seed)
        self.policy = precision.policy_for(config.mixed_precision, strategy)
        logging.info("precision: %s", self.policy)
        with self.strategy.scope(), precision.global_policy(self.policy):
            self.model = task.build_model()
            self.optimizer = precision.wrap_optimizer(
                build_optimizer(config.optimizer, task.learning_rate_schedule(WarmupDecaySchedule(config.schedule))),
                self.policy)
            # Every variable that trains in any phase gets its optimizer slots now (phases freeze later).
            self.optimizer.build(self.model.trainable_variables)
            self.best_metric = tf.Variable(-math.inf, dtype=tf.float64, trainable=False, name="best_metric")
            self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step")
            self.weight_average = (WeightAverage(self.model, config.moving_average_decay)
                                   if config.moving_average_decay else None)
        averages = {"weight_average": self.weight_average.trackable} if self.weight_average else {}
        self.checkpoint = tf.train.Checkpoint(model=trackable_variables(self.model), optimizer=self.optimizer,
                                              best_metric=self.best_metric, best_step=self.best_step, **averages)
        if self.weight_average:
            logging.info("evaluating and exporting the moving average of the weights (decay %g, warmed up as "
                         "min(decay, (1+step)/(10+step)); --moving_average_decay=0 turns it off)",
                         config.moving_average_decay)
        self.manager = None  # opened once the job dir's checkpoints are restored (_restore_or_warm_start)
        # The float32 copy of the model that exports and its serving tf.Module, built at the first export.
        self._serving_model, self._serving = None, None
        # Only the chief writes TensorBoard events (where the platform's TensorBoard reads, on Vertex AI).
        self.summaries = (tf.summary.create_file_writer(self.layout.tensorboard_dir) if self.chief
                          else tf.summary.create_noop_writer())
        # Who listens to the job's events (algorithms/runtime/events.py): every worker's report (written by the
        # chief only), TensorBoard and early stopping (which all workers must agree on); the caller's `callbacks`
        # (the platform's metric reporting) on the chief only, so they see the whole job once.
        self.callbacks = [ReportCallback(TrainingReport(self.layout.report_dir, task.metric_name, enabled=self.chief),
                                         task, self.summaries),
                          EvaluationScalars(self.summaries),
                          EarlyStopping(config.early_stopping_patience, config.train_steps_per_eval, config.max_steps)]
        if self.chief:
            self.callbacks += list(callbacks)
        self._last_train_loss = None
        self._train_fn = self._make_train_fn()
        self._eval_fn = self._make_eval_fn()

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    # --- compiled functions ------------------------------------------------------------------------------
    def _make_train_fn(self):
        task, model, optimizer, strategy = self.task, self.model, self.optimizer, self.strategy
        global_batch = self.config.train_batch_size
        weight_average = self.weight_average

        def replica_step(batch):
            with tf.GradientTape() as tape:
                per_example, regularization = task.compute_loss(model, batch)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                loss += regularization / strategy.num_replicas_in_sync
                scaled_loss = optimizer.scale_loss(loss)  # loss scaling under float16, identity otherwise
            gradients = tape.gradient(scaled_loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            if weight_average is not None:
                weight_average.update(optimizer.iterations)
            return loss

        @tf.function
        def train_steps(iterator, num_steps):
            # Several steps per call: the Python loop only wakes up to log, evaluate and checkpoint.
            total = tf.constant(0.0)
            for _ in tf.range(num_steps):
                per_replica_loss = strategy.run(replica_step, args=(next(iterator),))
                total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
            return total / tf.cast(num_steps, tf.float32)

        return train_steps

    def _make_eval_fn(self):
        task, model, strategy = self.task, self.model, self.strategy

        @tf.function
        def eval_batch(batch):
            # Each worker's local replicas together see the whole set: no cross-worker gathering needed.
            return strategy.experimental_local_results(strategy.run(lambda b: task.eval_step(model, b), args=(batch,)))

        return eval_batch

    # --- pieces of the loop ------------------------------------------------------------------------------
    def _restore_or_warm_start(self) -> None:
        directory = self.layout.checkpoint_dir
        if self.chief:
            recover_interrupted_swap(self.layout.model_dir)
            remove_stale_temporaries(directory)
        # Every worker restores from the chief's checkpoints, so a resumed cluster starts in step.
        restored = restore_newest_usable(self.checkpoint, directory, self.chief)
        self._open_checkpoint_manager(restored)
        if restored:
            if self.weight_average and not _holds_weight_average(restored):
                logging.info("%s holds no moving average of the weights: it starts from the restored weights",
                             restored)
                self.weight_average.reset()
            logging.info("resumed from %s at step %d (best %s=%.4f at step %d)", restored, self.step,
                         self.task.metric_name, self.best_metric.numpy(), self.best_step.numpy())
            self._finish_interrupted_export()
            return
        if exported_step(self.layout.model_dir) is not None:
            raise UserInputError(
                f"{self.layout.model_dir} holds an exported model but {directory} has no checkpoint to resume "
                f"from; training from step 0 would replace that model. Delete {self.layout.model_dir} to start "
                f"over, or use another --job-dir (with --pretrained_checkpoint_path={self.layout.model_dir} to "
                "start from the model)")
        if self.config.pretrained_checkpoint_path:
            prefix = resolve_checkpoint_prefix(self.config.pretrained_checkpoint_path)
            self.task.warm_start(self.model, prefix)
        else:
            self.task.load_pretrained(self.model)
        if self.weight_average:
            self.weight_average.reset()  # the average starts at the warm-started weights, not the random ones

    def _open_checkpoint_manager(self, restored: str | None) -> None:
        # Only the chief keeps the real checkpoints; other workers write theirs to a scratch dir.
        directory = self.layout.checkpoint_dir if self.chief else self.worker_checkpoint_dir
        if self.chief and restored:
            # The state file may be missing or garbled: rewrite it from the files, so the manager keeps pruning.
            # Timestamps after last_preserved_timestamp=0 put every checkpoint on the manager's pruning list.
            kept = list(reversed(checkpoints_on_disk(directory)))
            tf.compat.v1.train.update_checkpoint_state(
                directory, restored, all_model_checkpoint_paths=kept,
                all_model_checkpoint_timestamps=[float(i + 1) for i in range(len(kept))], last_preserved_timestamp=0.0)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=MAX_CHECKPOINTS_KEPT,
                                                  checkpoint_name=CHECKPOINT_PREFIX)

    def _finish_interrupted_export(self) -> None:
        """The best model is checkpointed before it is exported: a job killed between the two resumes with the
        best weights restored and their export missing, and exports them now."""
        best_step = int(self.best_step.numpy())
        if best_step == self.step and exported_step(self.layout.model_dir) != best_step:
            logging.warning("the best model (step %d) was checkpointed but its export did not finish: exporting it "
                            "now", best_step)
            with self._evaluated_weights():
                weights = self.model.get_weights()
            self._export(float(self.best_metric.numpy()), weights)

    def _enter_training_phase(self) -> None:
        """What trains from this step on (e.g. the head alone, then the whole network); a change retraces the
        training function, whose gradients cover the trainable variables it saw when traced."""
        if self.task.set_training_phase(self.model, self.step):
            self._train_fn = self._make_train_fn()

    def _evaluated_weights(self):
        """The weights that are evaluated and exported: the moving average when there is one."""
        return self.weight_average.swapped_in() if self.weight_average else contextlib.nullcontext()

    def evaluate(self) -> dict:
        # Every input pipeline (worker) evaluates the whole set, so all of them run the same number of batches.
        # Built once: each pass is a new iterator over it (building it again would trace its functions again).
        if self._eval_data is None:
            self._eval_data = self.strategy.distribute_datasets_from_function(self.task.eval_dataset)
        dataset = self._eval_data
        self.task.eval_counters.reset()  # each pass counts its skipped records from zero
        evaluator = self.task.evaluator
        evaluator.reset()
        with data_errors_as_user_errors():
            for batch in dataset:
                for replica_outputs in self._eval_fn(batch):
                    evaluator.update({key: value.numpy() for key, value in replica_outputs.items()})
        if not evaluator.num_images:
            raise UserInputError(f"no validation image could be decoded from --validation_data_path="
                                 f"{self.config.validation_data_path}")
        return evaluator.result()

    def _check_skipped_records(self, split: str) -> None:
        limit = self.config.max_bad_image_fraction
        attempted, skipped = self.task.skipped_record_counts()[split]
        # The endless training pipeline may have a few records mid-decode when read: judge it only once
        # enough records went through. A finished evaluation pass is exact.
        if skipped <= 0 or (split == "train" and attempted < MIN_RECORDS_FOR_SKIP_CHECK):
            return
        if skipped > limit * attempted:
            raise DataError(f"{skipped} of {attempted} {split} records were skipped (undecodable images, images "
                            f"above --max_image_pixels, or the unreadable rest of a cut TFRecord file), more than "
                            f"--max_bad_image_fraction={limit}; fix or remove them (the lines 'WARNING: skipped ...' "
                            f"above name the first {SKIPS_LOGGED_EACH} with file and record)")
        if split == "eval":
            logging.warning("skipped %d of %d validation records with undecodable or too large images (within "
                            "--max_bad_image_fraction=%g); the metrics cover the rest", skipped, attempted, limit)

    def _check_finite(self, metrics: dict) -> None:
        broken = {name: value for name, value in metrics.items() if isinstance(value, float) and not math.isfinite(value)}
        if broken:
            shown = ", ".join(f"{name}={value}" for name, value in broken.items())
            raise DivergedError(f"the evaluation at step {self.step} gave {shown}: training diverged. "
                                f"{self._divergence_advice()}")

    def _divergence_advice(self) -> str:
        last = self.manager.latest_checkpoint if self.manager else None
        rate = self.config.schedule.initial_learning_rate
        resume = f"the rerun resumes from {last}, whose weights are finite" if last else "the rerun starts from step 0"
        return (f"Nothing of this step was exported or checkpointed; {resume}. Rerun the same command with a lower "
                f"--initial_learning_rate (now {rate:g}; try {rate / 4:g}) or a longer --warmup_steps, and check "
                "the data")

    def _export(self, value: float, weights: list) -> None:
        """Exports `weights` (the model's get_weights(), read by every worker: under MultiWorkerMirrored, reading
        synced variables is a collective) as the best model; the chief writes."""
        if not self.chief:
            return
        if self._serving is None:
            # A never-compiled float32 copy outside the strategy: the SavedModel holds weights only and
            # serves in float32 whatever the training precision. One module for the whole job: its signatures
            # are traced at the first export and reused by the later ones and the report (1-3 s each).
            with precision.global_policy("float32"):
                self._serving_model = self.task.build_model()
            self._serving = self.task.serving_module(self._serving_model)
        self._serving_model.set_weights(weights)
        labels = {"job_id": self.config.placement.job_id, "global_step": self.step}
        target = self.layout.model_dir
        with self._write_failure_as_error(target, "the exported model", remove_unfinished_export):
            export_saved_model(self._serving, target, labels, self.task.extra_export_files())
        logging.info("exported the best model so far (%s=%.4f, step %d) to %s", self.task.metric_name, value,
                     self.step, target)

    def _save_checkpoint(self) -> str:
        with self._write_failure_as_error(self.layout.checkpoint_dir, "the checkpoint", remove_stale_temporaries):
            return self.manager.save(checkpoint_number=self.step)

    @contextlib.contextmanager
    def _write_failure_as_error(self, path: str, what: str, clean_up):
        """Writing `what` under `path` failed: a full disk or quota, or storage that kept failing after the
        client's own retries (gs:// 503s, dropped connections). Temporaries are removed and one line names the
        path (and the bytes needed, or the object that failed); the previous model and checkpoints are untouched
        and the rerun resumes from them."""
        try:
            yield
        except (tf.errors.OpError, OSError) as error:
            text = (getattr(error, "message", None) or str(error)).strip()
            out_of_space = (isinstance(error, tf.errors.ResourceExhaustedError) or "No space left" in text
                            or "quota" in text.lower() or getattr(error, "errno", None) == errno.ENOSPC)
            if not out_of_space and not isinstance(error, _STORAGE_ERRORS):
                raise
            if self.chief:
                try:
                    clean_up(path)
                except (tf.errors.OpError, OSError) as cleanup_error:
                    logging.warning("could not remove the unfinished files under %s: %s", path, cleanup_error)
            if not out_of_space:
                raise StorageError(
                    f"could not write {what} of step {self.step} under {path}, even after retrying: "
                    f"{text.splitlines()[0][:300]}. The model in {self.layout.model_dir} and the earlier checkpoints "
                    "are intact; rerun the same command to resume (GCS_RETRY_CONFIG_MAX_RETRIES sets how often "
                    "TensorFlow retries)") from None
            variables = self.model.variables + (self.optimizer.variables if what == "the checkpoint" else [])
            needed = sum(v.numpy().nbytes for v in variables)
            raise OutOfSpaceError(
                f"no space left on the disk (or quota) of {path} while writing {what} of step {self.step} (about "
                f"{needed / 2 ** 20:.0f} MiB needed): {text.splitlines()[0][:200]}. Free space or point --job-dir "
                f"at a larger disk, then rerun the same command; the model in {self.layout.model_dir} and the "
                "earlier checkpoints are intact") from None

    def _evaluate_report_export(self) -> Evaluation:
        """Evaluates; a better metric becomes the best model, checkpointed first and then exported, so a job killed
        between the two exports it on resume (the checkpoint holds the best metric and step). Then the callbacks
        hear of it."""
        started = time.time()
        with self._evaluated_weights():
            metrics = self.evaluate()
            for split in ("eval", "train"):
                self._check_skipped_records(split)
            self._check_finite(metrics)
            value = metrics[self.task.metric_name]
            best = self.best_metric.numpy()
            improved = self.best_step.numpy() < 0 or (value > best if self.task.spec.maximize else value < best)
            exported_weights = self.model.get_weights() if improved else None
        if improved:
            self.best_metric.assign(value)
            self.best_step.assign(self.step)
        self._save_checkpoint()  # the trained weights (and their average), outside the swap
        if improved:
            self._export(value, exported_weights)
        evaluation = Evaluation(step=self.step, train_loss=self._last_train_loss, metrics=metrics,
                                metric_name=self.task.metric_name, improved=improved,
                                best_value=float(self.best_metric.numpy()), best_step=int(self.best_step.numpy()))
        for callback in self.callbacks:
            callback.on_evaluation(evaluation)
        shown = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        logging.info("eval at step %d: %s (%.1fs)%s", self.step, shown, time.time() - started,
                     " new best" if improved else f" (best {evaluation.best_value:.4f} at step {evaluation.best_step})")
        return evaluation

    def _stop_reason(self, evaluation: Evaluation) -> str | None:
        return next((reason for reason in (c.stop_reason(evaluation) for c in self.callbacks) if reason), None)

    def run(self) -> RunSummary:
        started = time.time()
        config = self.config
        metrics, losses = {}, []
        with StopSignals() as stop:
            self._restore_or_warm_start()
            if self.step >= config.max_steps:
                logging.info("step %d already reaches --max_steps=%d: evaluating only", self.step, config.max_steps)
                metrics = self._evaluate_report_export().metrics
            else:
                metrics, losses = self._train(config, stop)
        end = TrainingEnd(step=self.step, metric_name=self.task.metric_name, best_value=float(self.best_metric.numpy()),
                          best_step=int(self.best_step.numpy()), model_dir=self.layout.model_dir,
                          seed=f"{self.run_seed.seed} ({self.run_seed.source})",
                          duration=_duration(time.time() - started), serving=self._serving)
        for callback in self.callbacks:
            callback.on_training_end(end)
        self._copy_to_export_dir()
        return RunSummary(metric_name=self.task.metric_name, final_step=self.step, best_metric=float(self.best_metric.numpy()),
                          best_step=int(self.best_step.numpy()), last_metrics=metrics, model_dir=self.layout.model_dir,
                          first_loss=losses[0][1] if losses else None, losses=losses)

    def _copy_to_export_dir(self) -> None:
        export_dir = self.config.export_dir
        if not (export_dir and self.chief and exported_step(self.layout.model_dir) is not None):
            return
        with self._write_failure_as_error(export_dir, "the copy of the model", lambda _: None):
            copy = publish_copy(self.layout.model_dir, export_dir, str(int(time.time())))
        logging.info("copied the best model to %s (--export_dir)", copy)

    def _train_dataset(self, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """The training stream from where this run starts: a resumed run skips the records an uninterrupted
        one would have trained on, so it sees the same records with the same augmentation from here on."""
        skip = reproducibility.records_already_trained(self.step, self.config.train_batch_size, input_context)
        if skip:
            logging.info("resuming the training stream after the %d records of steps 0..%d", skip, self.step - 1)
        return self.task.train_dataset(input_context, reproducibility.StreamStart(self.run_seed.seed, skip))

    def _train(self, config: JobConfig, stop: StopSignals):
        dataset = self.strategy.distribute_datasets_from_function(self._train_dataset)
        iterator = iter(dataset)
        losses, metrics = [], {}
        start_step, started = self.step, time.time()
        interval_start, interval_step, interval_loss, interval_calls = started, start_step, 0.0, 0
        seconds_per_step = None
        logging.info("training %s from step %d to %d, batch %d, evaluating every %d steps", self.task.name,
                     start_step, config.max_steps, config.train_batch_size, config.train_steps_per_eval)
        phase_steps = self.task.training_phase_steps()
        while self.step < config.max_steps:
            self._stop_if_signalled(stop)
            self._enter_training_phase()
            step = self.step
            next_eval = min(config.max_steps, (step // config.train_steps_per_eval + 1) * config.train_steps_per_eval)
            next_log = (step // config.log_every_steps + 1) * config.log_every_steps
            next_phase = min([s for s in phase_steps if s > step], default=config.max_steps)
            # The very first call is one step, so the first loss is logged before any learning. Later calls end at
            # the next log, evaluation or phase, and last about CHUNK_SECONDS at most, so a stop signal is
            # answered well inside the platforms' grace period.
            longest = 1 if seconds_per_step is None else max(1, int(CHUNK_SECONDS / seconds_per_step))
            num_steps = 1 if step == start_step else min(min(next_eval, next_log, next_phase) - step, longest)
            chunk_started = time.time()
            with data_errors_as_user_errors():
                loss = float(self._train_fn(iterator, tf.constant(num_steps)))
            now, step = time.time(), self.step
            seconds_per_step = (now - chunk_started) / num_steps
            if not math.isfinite(loss):
                raise DivergedError(f"the training loss became {loss} in the steps up to {step}: training diverged. "
                                    f"{self._divergence_advice()}")
            # Mean over the interval's calls, weighted by their steps (a float16 step skipped for an overflowing
            # loss scale runs without advancing the step, so the step count can lag the steps run).
            interval_loss, interval_calls = interval_loss + loss * num_steps, interval_calls + num_steps
            if step == start_step + 1 or step % config.log_every_steps == 0 or step == next_eval:
                loss = interval_loss / interval_calls
                losses.append((step, loss))
                self._last_train_loss = loss
                self._log_training(step, loss, (step - interval_step) / max(now - interval_start, 1e-9),
                                   (step - start_step) / max(now - started, 1e-9))
                interval_start, interval_step, interval_loss, interval_calls = now, step, 0.0, 0
                self._check_skipped_records("train")
            if step == next_eval:
                evaluation = self._evaluate_report_export()
                metrics = evaluation.metrics
                reason = self._stop_reason(evaluation)
                if reason:
                    logging.info("early stopping at step %d: %s", step, reason)
                    break
        attempted, skipped = self.task.skipped_record_counts()["train"]
        if skipped:
            logging.warning("skipped %d of %d training records (undecodable, too large, or in the unread rest of a cut "
                            "file)", skipped, attempted)
        return metrics, losses

    def _log_training(self, step: int, loss: float, steps_per_second: float, average_steps_per_second: float) -> None:
        config = self.config
        images_per_second = steps_per_second * config.train_batch_size
        eta = (config.max_steps - step) / max(average_steps_per_second, 1e-9)
        learning_rate = float(self.optimizer.learning_rate.numpy()) if hasattr(
            self.optimizer.learning_rate, "numpy") else float(self.optimizer.learning_rate)
        logging.info("step %d/%d loss=%.4f lr=%.5g %.1f images/s ETA %s", step, config.max_steps, loss,
                     learning_rate, images_per_second, _duration(eta))
        with self.summaries.as_default(step=step):
            tf.summary.scalar("train/loss", loss)
            tf.summary.scalar("train/learning_rate", learning_rate)
            tf.summary.scalar("train/images_per_second", images_per_second)

    def _stop_if_signalled(self, stop: StopSignals) -> None:
        """On SIGTERM/SIGINT (on any worker: they agree first, as every one must save): saves a checkpoint of
        this step, unless the evaluation just did, and raises Preempted."""
        if self.lock is not None and self.lock.lost:
            raise UserInputError(f"another process took over the job lock {self.lock.path} (this one looked dead "
                                 "to it); this process stops without writing anything more")
        received = stop.received is not None
        if getattr(self.strategy.extended, "_num_workers", 1) > 1:
            flag = self.strategy.run(lambda: tf.constant(int(received)))
            received = bool(self.strategy.reduce(tf.distribute.ReduceOp.SUM, flag, axis=None).numpy())
        if not received:
            return
        saved = self.manager.latest_checkpoint
        if not saved or not saved.endswith(f"-{self.step}"):
            saved = self._save_checkpoint()
        raise Preempted(stop.received or signal.SIGTERM, self.step, saved)


def _holds_weight_average(prefix: str) -> bool:
    return any(key.startswith("weight_average/") for key in tf.train.load_checkpoint(prefix).get_variable_to_shape_map())


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def train(task: Task, config: JobConfig, callbacks: tuple = ()) -> RunSummary:
    """Runs the job; `callbacks` (events.TrainerCallback) hear the chief's evaluations and end."""
    # The strategy comes first: MultiWorkerMirrored must exist before anything starts TensorFlow's runtime;
    # only the threading of op determinism must be set before it.
    reproducibility.configure_deterministic_ops(config.seed, config.deterministic_ops)
    strategy = choose_strategy(config.distribution_strategy, config.placement)
    task.preflight()
    layout = JobLayout.create(config.job_dir, config.placement)
    if not config.placement.is_chief:
        # Every worker must save (MultiWorkerMirrored's save is collective); the others' copies are thrown away.
        with tempfile.TemporaryDirectory(prefix="worker-checkpoints-") as scratch:
            return Trainer(task, config, strategy, layout, worker_checkpoint_dir=scratch).run()
    layout.check_writable()  # before anything writes
    lock = JobLock(layout.checkpoint_dir, config.placement.trial_id)
    lock.acquire()  # before a checkpoint is read: a second process with the same trial stops here
    try:
        return Trainer(task, config, strategy, layout, lock, callbacks=callbacks).run()
    finally:
        lock.release()
