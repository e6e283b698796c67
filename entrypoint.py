#!/usr/bin/env python3
"""Trains an image classifier or an object detector from TFRecords (or class folders) and exports the most
accurate model as a SavedModel: the command line of Google's AI Platform built-in image algorithms.

    python entrypoint.py --training_data_path=... --validation_data_path=... --job-dir=... \
        --num_classes=5 --max_steps=1000 [--model_type=resnet-18 ...]
    python entrypoint.py predict --model_dir=JOB_DIR/model --input=IMAGE|DIR|GLOB [--output_images=DIR]
    python entrypoint.py batch_predict --model_dir=JOB_DIR/model --input_paths=PATTERN --output_path=OUT \
        [--data_format=image_files|file_list|jsonl|tf_record] [--runner=DataflowRunner ...]   (on Apache Beam)
    python entrypoint.py serve [--model_dir=JOB_DIR/model] [--port=8080]   (HTTP: Vertex AI and SageMaker
        endpoints, `docker run -p 8080:8080 IMAGE serve --model_dir=...`; `serve --help`)
    IMAGE train        (SageMaker: hyperparameters, channels and outputs under /opt/ml; platforms/sagemaker.py)
    python entrypoint.py tune --config=SPEC.yaml --job-dir=DIR [--storage=URL] [--parallel_trials=N] \
        -- <training flags>   (a hyperparameter sweep on Optuna; `tune --help`)
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the job log


def _only_our_info_lines(record) -> bool:
    """INFO lines from TensorFlow/Keras internals (saver chatter) stay out of the job log; warnings pass."""
    import logging as std_logging

    return record.levelno >= std_logging.WARNING or "site-packages" not in record.pathname


def main(argv: list[str]) -> int:
    from absl import logging

    import platforms
    from algorithms import registry
    from algorithms.runtime.preemption import Preempted
    from core.errors import UserInputError

    if argv and argv[0] == "predict":
        from client import predict

        return predict.main(argv[1:])
    if argv and argv[0] == "batch_predict":
        from client import batch_predict

        return batch_predict.main(argv[1:])
    if argv and argv[0] == "serve":
        from client import serve

        return serve.main(argv[1:])
    if argv and argv[0] == "tune":
        from tuning import tuner

        return tuner.main(argv[1:])
    if any(arg in ("-h", "--help", "--helpfull", "help") for arg in argv):
        print(__doc__)
        print(registry.help_text())
        return 0
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_only_our_info_lines)
    failure_file = platforms.failure_file(argv)  # SageMaker's: its FailureReason
    if failure_file and os.path.exists(failure_file):  # left by a stopped run of this job (a spot restart)
        os.remove(failure_file)

    def fail(line: str) -> None:
        print(line, file=sys.stderr)
        if failure_file:
            platforms.write_failure(failure_file, line)

    try:
        job = platforms.job_from(argv, set(registry.new_flag_values()))
        config = registry.parse_job_config(job.argv, placement=job.placement)
        summary = registry.run_job(config)
    except UserInputError as error:
        logging.error("%s", error)
        fail(f"ERROR: {error}")
        return 2
    except Preempted as stopped:
        logging.warning("%s", stopped)
        fail(f"STOPPED: {stopped}")
        return stopped.exit_code
    except Exception as error:
        if failure_file:  # the trace goes to the log; SageMaker's FailureReason gets its last line
            last_line = (str(error).strip().splitlines() or [""])[-1]
            fail(f"INTERNAL ERROR: {type(error).__name__}: {last_line}")
        raise
    logging.info("done at step %d: best %s=%.4f at step %d; model: %s", summary.final_step,
                 summary.metric_name, summary.best_metric, summary.best_step, summary.model_dir)
    print(f"best {summary.metric_name}={summary.best_metric:.4f} at step {summary.best_step}; "
          f"SavedModel: {summary.model_dir}")
    return 0


if __name__ == "__main__":
    from algorithms.runtime import cpu_kernels
    from platforms import sagemaker

    # Before TensorFlow loads; only here, so a main() called in-process sets nothing.
    cpu_kernels.choose(sys.argv[1:], sagemaker.hyperparameters_of(sys.argv[1:]))
    sys.exit(main(sys.argv[1:]))
