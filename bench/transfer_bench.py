"""Fine-tuning from a pretrained backbone vs. training from scratch: held-out accuracy and wall time at equal
steps, same data, one run.

Offline, the "pretrained" backbone is made here: a ResNet-18 trained on scikit-learn's real digit scans of
0-4. Its backbone alone is saved as a Keras .weights.h5 file, so the target jobs put a fresh head on it, as the
tutorials do (a checkpoint with a head of the same size would restore that head too). The target task is
telling the digits 5-9 apart (other classes, other images), trained for the same number of steps (a) from
scratch, (b) from the pretrained backbone with it frozen (--train_only_top_layer), (c) frozen for half the
steps, then the whole network at a lower rate (--fine_tune_after_steps).
Each job runs through entrypoint.py as users run it. Wall time is the job's own, start-up included; time per
step is the median of the logged training intervals of each phase (the job's own images/s), so tracing,
evaluation and export are left out.

    python bench/transfer_bench.py [--pretrain_steps=300 --steps=150 --image_size=32]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BATCH = 32
COMMON = ["--model_type=resnet-18", f"--train_batch_size={BATCH}", "--optimizer_type=adam", "--initial_learning_rate=0.002",
          "--warmup_steps=10", "--seed=1", "--log_every_steps=15"]


def split_digits(root: str, image_size: int) -> dict:
    """{"source": (train, validation), "target": (...)}: digits 0-4 relabelled 1-5, digits 5-9 relabelled 1-5."""
    import tensorflow as tf

    from data.sample_data import build_digits
    from dataloaders import tfrecord_files

    digits = build_digits(os.path.join(root, "digits"), image_size=image_size)
    out = {}
    for name, first_digit in (("source", 0), ("target", 5)):
        paths = []
        for split in ("train", "validation"):
            path = os.path.join(root, name, f"{split}-00000-of-00001")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tf.io.TFRecordWriter(path) as writer:
                for source in tfrecord_files.resolve_files(digits[split], split):
                    for record in tfrecord_files.read_records(source, 100000):
                        example = tf.train.Example.FromString(record)
                        label = example.features.feature["image/class/label"].int64_list.value
                        digit = label[0] - 1
                        if first_digit <= digit < first_digit + 5:
                            label[0] = digit - first_digit + 1
                            writer.write(example.SerializeToString())
            paths.append(path)
        out[name] = tuple(paths)
    return out


def save_backbone_weights(job_dir: str, image_size: int, path: str) -> str:
    """The pretext job's exported backbone as a .weights.h5 file (`model.backbone.save_weights`)."""
    from algorithms.classification.model import ImageClassifier
    from algorithms.runtime.checkpoints import restore_matching

    model = ImageClassifier("resnet-18", image_size, 5, name="image_classifier")
    restored, missing = restore_matching(model.backbone.variables, f"{job_dir}/model/variables/variables")
    if missing:
        raise SystemExit(f"the pretext model lacks {len(missing)} backbone variables, e.g. {missing[0]}")
    model.backbone.save_weights(path)
    return path


def milliseconds_per_step(log: str, batch: int, phase_start: int) -> tuple[float, float | None]:
    """Median ms/step of the logged training intervals before and after `phase_start` (the step the whole
    network starts training; 0 = one phase). The first interval (one step, with tracing) and the first
    interval of the second phase (retracing) are left out."""
    intervals = []
    for line in log.splitlines():
        match = re.search(r"step (\d+)/\d+ loss=\S+ lr=\S+ ([\d.]+) images/s", line)
        if match and int(match.group(1)) > 1:
            intervals.append((int(match.group(1)), 1000.0 * batch / float(match.group(2))))
    first = [ms for step, ms in intervals if not phase_start or step <= phase_start]
    second = [ms for step, ms in intervals if phase_start and step > phase_start][1:]
    return statistics.median(first), statistics.median(second) if second else None


def run_job(data, job_dir, steps, image_size, *extra) -> tuple[float, float, str]:
    """(best held-out top-1, wall seconds, log) of one job."""
    args = [sys.executable, os.path.join(REPO, "entrypoint.py"), f"--training_data_path={data[0]}",
            f"--validation_data_path={data[1]}", f"--job-dir={job_dir}", "--num_classes=5", f"--max_steps={steps}",
            f"--train_steps_per_eval={steps}", f"--image_size={image_size}", *COMMON, *extra]
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"job failed:\n{result.stderr[-3000:]}")
    return float(result.stdout.split("best top_1_accuracy=")[1].split()[0]), seconds, result.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain_steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--image_size", type=int, default=32)
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="transfer-bench-")
    data = split_digits(root, args.image_size)
    pretrain_accuracy, pretrain_seconds, _ = run_job(data["source"], f"{root}/pretrain", args.pretrain_steps,
                                                     args.image_size)
    pretrained = "--pretrained_weights=" + save_backbone_weights(f"{root}/pretrain", args.image_size,
                                                                 f"{root}/pretrained_backbone.weights.h5")
    switch = args.steps // 2
    runs = {
        "from scratch": run_job(data["target"], f"{root}/scratch", args.steps, args.image_size),
        "pretrained, backbone frozen": run_job(data["target"], f"{root}/frozen", args.steps, args.image_size,
                                               pretrained, "--train_only_top_layer=true"),
        "pretrained, frozen then fine-tuned": run_job(
            data["target"], f"{root}/two_phase", args.steps, args.image_size, pretrained, "--train_only_top_layer=true",
            f"--fine_tune_after_steps={switch}", "--fine_tune_learning_rate=0.0005"),
    }
    phase_starts = {"pretrained, frozen then fine-tuned": switch}
    print(f"pretext: ResNet-18 on digits 0-4, {args.pretrain_steps} steps: top-1 {pretrain_accuracy:.3f} "
          f"({pretrain_seconds:.0f} s)")
    print(f"target: digits 5-9 ({args.image_size} px, batch 32), {args.steps} steps each, {os.cpu_count()} CPUs:")
    for name, (accuracy, seconds, log) in runs.items():
        first, second = milliseconds_per_step(log, BATCH, phase_starts.get(name, 0))
        per_step = f"{first:.0f} ms/step" + (f" frozen, then {second:.0f} ms/step whole network" if second else "")
        print(f"  {name:36s} held-out top-1 {accuracy:.3f}   wall {seconds:5.1f} s   {per_step}")


if __name__ == "__main__":
    main()
