"""What repeatability costs: the same seeded job with TensorFlow's op determinism on and off, which CPU kernels
each runs, and whether two runs with it on give the same model bit for bit.

    python bench/determinism_bench.py [--rounds=2] [--classification_steps=60] [--detection_steps=30] \
        [--tasks=classification,detection]

Each round runs the job three ways, in an order that rotates from round to round, through the real command line
on the sample data (digit scans; digits pasted on photos for detection):
  - op determinism on: what --seed gives; TensorFlow's own CPU kernels (entrypoint.py turns oneDNN off for it),
  - op determinism off, TensorFlow's own CPU kernels (TF_ENABLE_ONEDNN_OPTS=0): what determinism alone costs,
  - op determinism off, oneDNN's CPU kernels (TF_ENABLE_ONEDNN_OPTS=1): what a run without --seed gets.
Training speed is the median of the job's own logged intervals (images/s), the first one (tracing) left out.
Every side uses the same seed, so they read the same records with the same augmentation.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

INTERVAL = re.compile(r"step (\d+)/\d+ loss=\S+ lr=\S+ ([0-9.]+) images/s")
CLASSIFICATION = ["--num_classes=10", "--model_type=resnet-18", "--image_size=32", "--train_batch_size=32",
                  "--optimizer_type=adam", "--initial_learning_rate=0.002", "--warmup_steps=10"]
DETECTION = ["--num_classes=3", "--resnet_depth=18", "--image_size=128,128", "--train_batch_size=8",
             "--optimizer_type=adam", "--initial_learning_rate=0.001", "--warmup_steps=5", "--aug_scale_min=0.8",
             "--aug_scale_max=1.2"]


SETTINGS = {  # name: (--deterministic_ops, TF_ENABLE_ONEDNN_OPTS)
    "op determinism on, TensorFlow's kernels": ("true", "0"),
    "op determinism off, TensorFlow's kernels": ("false", "0"),
    "op determinism off, oneDNN's kernels": ("false", "1"),
}


def run_job(data: dict, job_dir: str, flags: list, steps: int, setting: str) -> list[float]:
    deterministic_ops, onednn = SETTINGS[setting]
    args = [sys.executable, os.path.join(REPO, "entrypoint.py"), f"--training_data_path={data['train']}",
            f"--validation_data_path={data['validation']}", f"--job-dir={job_dir}", *flags, "--seed=1",
            f"--max_steps={steps}", f"--train_steps_per_eval={steps}", "--log_every_steps=10", "--num_eval_images=32",
            f"--deterministic_ops={deterministic_ops}"]
    result = subprocess.run(args, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn})
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return interval_rates(result.stderr)


def interval_rates(log: str) -> list[float]:
    """images/s of a job's logged training intervals, without the one-step first call and the interval right
    after it (still warming up) when there are others."""
    rates = [float(rate) for step, rate in INTERVAL.findall(log) if int(step) > 1]
    return rates[1:] if len(rates) > 1 else rates


def exported_variables(model_dir: str) -> dict:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "variables", "variables"))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map() if "VARIABLE_VALUE" in key}


def compare(name: str, data: dict, flags: list, steps: int, rounds: int, scratch: str) -> None:
    names = list(SETTINGS)
    rates = {setting: [] for setting in names}
    models = []
    for round_ in range(rounds):
        for setting in names[round_ % len(names):] + names[:round_ % len(names)]:
            job_dir = os.path.join(scratch, f"{name}-{round_}-{names.index(setting)}")
            rates[setting].append(statistics.median(run_job(data, job_dir, flags, steps, setting)))
            if SETTINGS[setting][0] == "true":
                models.append(exported_variables(os.path.join(job_dir, "model")))
    print(f"{name}: {steps} steps, {rounds} rounds")
    medians = {setting: statistics.median(rates[setting]) for setting in names}
    for setting in names:
        print(f"  {setting:<42}: {medians[setting]:.1f} images/s (rounds: "
              f"{', '.join(f'{r:.1f}' for r in rates[setting])})")
    print(f"  determinism on / off, same kernels: {medians[names[0]] / medians[names[1]]:.3f}")
    print(f"  oneDNN / TensorFlow's kernels, determinism off: {medians[names[2]] / medians[names[1]]:.3f}")
    print(f"  --seed (determinism on) / no --seed (oneDNN): {medians[names[0]] / medians[names[2]]:.3f}")
    if len(models) > 1:
        differing = [key for key in models[0] if not np.array_equal(models[0][key], models[1][key])]
        print(f"  two runs with op determinism on: {len(models[0]) - len(differing)} of {len(models[0])} exported "
              f"variables bit-identical")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--classification_steps", type=int, default=60)
    parser.add_argument("--detection_steps", type=int, default=30)
    parser.add_argument("--tasks", default="classification,detection", help="comma list of the tasks to measure")
    args = parser.parse_args()
    tasks = set(args.tasks.split(","))
    from data.sample_data import build_digit_detection, build_digits

    with tempfile.TemporaryDirectory(prefix="determinism-bench-") as scratch:
        digits = build_digits(os.path.join(scratch, "digits"), image_size=32)
        detection = build_digit_detection(os.path.join(scratch, "detection"), image_size=128, num_train=240,
                                          num_validation=32)
        print(f"{os.cpu_count()} CPUs")
        if "classification" in tasks:
            compare("classification (ResNet-18, 32 px, batch 32)", digits, CLASSIFICATION, args.classification_steps,
                    args.rounds, scratch)
        if "detection" in tasks:
            compare("detection (ResNet-18 + FPN, 128 px, batch 8)", detection, DETECTION, args.detection_steps,
                    args.rounds, scratch)


if __name__ == "__main__":
    main()
