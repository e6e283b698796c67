"""Images/s of `entrypoint.py batch_predict` (Beam RunInference, its defaults: DirectRunner, one worker process
per CPU) against the physical limit on this machine and against the `predict` subcommand, on the same real
photos, for a classifier and a detector, in one run. Target: batch_predict >= 0.8x the limit at 10,000 images.

The photos: `--images` (default 10,000) distinct JPEGs at camera sizes (320x240 and 640x480) cut from the
photos bundled with scikit-image (bench/converter_bench.py's set, built once into --cache_dir and shared with
that bench). The models: a ResNet-18 classifier and a ResNet-18 + FPN RetinaNet at --image_size, each trained
for 2 steps on the sample digits through the real command line and exported (their speed does not depend on
what they learned).

Each side is a fresh `python` process on the same machine, one after the other:
- limit: the exported `serving_default` called in one process on batches of --batch_size images whose bytes
  were read into memory before the clock starts (decoding happens inside the signature, as for every client
  of it); TensorFlow on every core. Only the calls are timed: no start-up, no file reads.
- batch_predict: `entrypoint.py batch_predict --input_paths=DIR/*/*.jpg` (data format image_files), the whole
  command timed, start-up and writing the results included.
- predict: `entrypoint.py predict --input=DIR/*/*.jpg --batch_size=N` (one process), the whole command timed.

    python bench/batch_predict_bench.py [--images=10000 --image_size=128 --batch_size=64 --kinds=classifier,detector]
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LIMIT_SCRIPT = """
import glob, json, sys, time
import tensorflow as tf
model_dir, pattern, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
serve = tf.saved_model.load(model_dir).signatures["serving_default"]
image_input = "image_bytes" if "image_bytes" in serve.structured_input_signature[1] else "encoded_image"
paths = sorted(glob.glob(pattern))
contents = [open(path, "rb").read() for path in paths]
batches = [(tf.constant(contents[i:i + batch_size]), tf.constant(paths[i:i + batch_size]))
           for i in range(0, len(paths), batch_size)]
serve(**{image_input: batches[0][0]}, key=batches[0][1])  # traced and warmed before the clock
started = time.perf_counter()
for images, keys in batches:
    serve(**{image_input: images}, key=keys)
print(json.dumps({"images": len(paths), "seconds": time.perf_counter() - started}))
"""


def train_model(kind: str, data_dir: str, job_dir: str, image_size: int) -> str:
    from data import sample_data

    if kind == "classifier":
        data = sample_data.build_digits(os.path.join(data_dir, "digits"), image_size=32)
        flags = ["--num_classes=10", "--model_type=resnet-18", f"--image_size={image_size}"]
    else:
        data = sample_data.build_digit_detection(os.path.join(data_dir, "boxes"), image_size=128, num_train=32,
                                                 num_validation=8)
        flags = ["--num_classes=3", "--resnet_depth=18", f"--image_size={image_size},{image_size}"]
    command = [sys.executable, os.path.join(REPO, "entrypoint.py"), f"--training_data_path={data['train']}",
               f"--validation_data_path={data['validation']}", f"--job-dir={job_dir}", "--max_steps=2",
               "--train_steps_per_eval=2", "--train_batch_size=8", *flags]
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return os.path.join(job_dir, "model")


def timed(command: list[str], stdout=subprocess.DEVNULL) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=REPO)
    if result.returncode not in (0, 1):  # predict exits 1 when some image failed; none should here
        raise SystemExit(f"{command[:3]} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def measure(kind: str, model_dir: str, pattern: str, images: int, batch_size: int, scratch: str) -> dict:
    limit = subprocess.run([sys.executable, "-c", LIMIT_SCRIPT, model_dir, pattern, str(batch_size)],
                           capture_output=True, text=True, check=True, cwd=REPO)
    limit = json.loads(limit.stdout.strip().splitlines()[-1])
    assert limit["images"] == images, limit
    output = os.path.join(scratch, f"batch-{kind}")
    batch_seconds = timed([sys.executable, "entrypoint.py", "batch_predict", f"--model_dir={model_dir}",
                           f"--input_paths={pattern}", f"--output_path={output}", f"--batch_size={batch_size}"])
    with open(os.path.join(output, "prediction.errors_stats-00000-of-00001")) as handle:
        counts = json.loads(handle.readline())
    assert counts["predicted"] == images, counts
    predict_seconds = timed([sys.executable, "entrypoint.py", "predict", f"--model_dir={model_dir}",
                             f"--input={pattern}", f"--batch_size={batch_size}"])
    return {"limit": images / limit["seconds"], "batch_predict": images / batch_seconds,
            "predict": images / predict_seconds, "batch_seconds": batch_seconds, "predict_seconds": predict_seconds,
            "limit_seconds": limit["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--kinds", default="classifier,detector")
    parser.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/converter_bench"))
    args = parser.parse_args()

    import converter_bench

    csv_path = converter_bench.build_photo_set(os.path.join(args.cache_dir, f"photos-{args.images}"), args.images)
    pattern = os.path.join(os.path.dirname(csv_path), "*", "*.jpg")
    assert len(glob.glob(pattern)) == args.images
    print(f"{args.images} photos (320x240 and 640x480 JPEGs); models at {args.image_size} px; batch "
          f"{args.batch_size}; {len(os.sched_getaffinity(0))} CPUs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="batch_predict_bench-") as scratch:
        for kind in args.kinds.split(","):
            model_dir = train_model(kind, os.path.join(scratch, "data"), os.path.join(scratch, f"job-{kind}"),
                                    args.image_size)
            figures = measure(kind, model_dir, pattern, args.images, args.batch_size, scratch)
            rows.append((kind, figures))
            print(f"# {kind}: limit {figures['limit']:.1f} images/s ({figures['limit_seconds']:.0f} s of calls); "
                  f"batch_predict {figures['batch_predict']:.1f} images/s ({figures['batch_seconds']:.0f} s, "
                  f"{figures['batch_predict'] / figures['limit']:.2f}x the limit); predict "
                  f"{figures['predict']:.1f} images/s ({figures['predict_seconds']:.0f} s, "
                  f"{figures['predict'] / figures['limit']:.2f}x)", flush=True)
    print("\n| model | limit (images/s) | batch_predict | ratio | predict | ratio |\n|---|---|---|---|---|---|")
    for kind, f in rows:
        print(f"| {kind} | {f['limit']:.1f} | {f['batch_predict']:.1f} | {f['batch_predict'] / f['limit']:.2f}x | "
              f"{f['predict']:.1f} | {f['predict'] / f['limit']:.2f}x |")


if __name__ == "__main__":
    main()
