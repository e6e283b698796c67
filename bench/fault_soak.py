"""Kill it, again and again: a training job is sent SIGTERM or SIGKILL at random moments (start-up, training,
evaluation, checkpointing, export), rerun each time with the same command, and finally run to the end.

Passes when the last run ends at --max_steps with exit code 0 and a loadable model, every SIGTERM ended the
run clean (exit 143 with its STOPPED line, or 0 when the job had already finished), and the exported model is
the best of everything hypertune was told: its step is the step of the best reported top_1_accuracy, and the
model, served on the whole validation set, scores exactly that.

    python bench/fault_soak.py [--kills=20 --max_steps=3000 --seed=0]
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FLAGS = ["--model_type=resnet-18", "--image_size=32", "--train_batch_size=32", "--optimizer_type=adam",
         "--initial_learning_rate=0.002", "--warmup_steps=10", "--seed=1", "--train_steps_per_eval=50",
         "--log_every_steps=5", "--num_classes=10"]


def served_accuracy(model_dir: str, validation_glob: str) -> float:
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    images, labels = [], []
    for record in tf.data.TFRecordDataset(tf.io.gfile.glob(validation_glob)):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        images.append(feature["image/encoded"].bytes_list.value[0])
        labels.append(feature["image/class/label"].int64_list.value[0] - 1)
    classes = serve(image_bytes=tf.constant(images), key=tf.constant([b""] * len(images)))["classes"].numpy()
    return float((classes == labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--max_steps", type=int, default=3000, help="more than the kills let it reach")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--longest_wait", type=float, default=25.0, help="seconds after start before the kill, at most")
    args = parser.parse_args()
    from data.sample_data import build_digits

    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="fault-soak-")
    data = build_digits(os.path.join(root, "data"), image_size=32)
    job_dir, metrics_file = os.path.join(root, "job"), os.path.join(root, "hypertune.metrics")
    command = [sys.executable, os.path.join(REPO, "entrypoint.py"), f"--training_data_path={data['train']}",
               f"--validation_data_path={data['validation']}", f"--job-dir={job_dir}",
               f"--max_steps={args.max_steps}", *FLAGS]
    reports, outcomes, failures = [], [], []

    def run(kill_after: float | None, kill_signal: int | None) -> tuple[int, str]:
        if os.path.exists(metrics_file):
            os.remove(metrics_file)
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "CLOUD_ML_HP_METRIC_FILE": metrics_file})
        if kill_after is not None:
            try:
                process.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                process.send_signal(kill_signal)
        _, log = process.communicate(timeout=600)
        if os.path.exists(metrics_file):  # HyperTune rewrites its file per process: keep every run's lines
            with open(metrics_file) as handle:
                reports.extend(json.loads(line) for line in handle if line.strip())
        return process.returncode, log

    started = time.time()
    for attempt in range(args.kills):
        kill_signal = rng.choice([signal.SIGTERM, signal.SIGKILL])
        wait = rng.uniform(1.0, args.longest_wait)
        code, log = run(wait, kill_signal)
        stopped = [line for line in log.splitlines() if line.startswith(("STOPPED: ", "ERROR: "))]
        outcomes.append((signal.Signals(kill_signal).name, round(wait, 1), code, stopped[-1][:90] if stopped else ""))
        if kill_signal == signal.SIGTERM and code not in (0, 143, -signal.SIGTERM):
            failures.append(f"run {attempt}: SIGTERM gave exit {code}: {log[-1500:]}")
        if kill_signal == signal.SIGTERM and code == 143 and not stopped:
            failures.append(f"run {attempt}: exit 143 without a STOPPED line")
        if code == 2:
            failures.append(f"run {attempt}: exit 2: {stopped}")
    code, log = run(None, None)
    seconds = time.time() - started
    for outcome in outcomes:
        print("  %-8s after %5.1f s -> exit %4d  %s" % outcome)
    if code != 0 or f"done at step {args.max_steps}" not in log:
        failures.append(f"the final run did not finish: exit {code}\n{log[-3000:]}")
    else:
        best = max(float(r["top_1_accuracy"]) for r in reports)
        best_steps = {int(r["global_step"]) for r in reports if float(r["top_1_accuracy"]) == best}
        import yaml

        with open(os.path.join(job_dir, "model", "deployment_config.yaml")) as handle:
            exported = int(yaml.safe_load(handle)["labels"]["global_step"])
        accuracy = served_accuracy(os.path.join(job_dir, "model"), data["validation"])
        print(f"hypertune history: {len(reports)} reports, best top_1_accuracy {best:.4f} at step(s) "
              f"{sorted(best_steps)}; exported model: step {exported}, served accuracy {accuracy:.4f}")
        if exported not in best_steps or abs(accuracy - best) > 1e-6:
            failures.append("the exported model is not the best one reported")
    print(f"{args.kills} kills ({sum(o[0] == 'SIGTERM' for o in outcomes)} SIGTERM, "
          f"{sum(o[0] == 'SIGKILL' for o in outcomes)} SIGKILL) and a final run in {seconds:.0f} s: "
          f"{'PASS' if not failures else 'FAIL'}")
    for failure in failures:
        print("  " + failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
