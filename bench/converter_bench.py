"""Images/s converting the same real JPEGs + CSV to TFRecords: ours (python -m data.jpeg_to_tf_record) vs. a
Python 3 port of the reference script's per-image logic (tensorflow/tpu tools/datasets/jpeg_to_tf_record.py),
both on Beam's DirectRunner with the same layout (2 workers, as threads and as processes), in one run.
Target >= 2x.

The reference port keeps what the original does per image: read the file with gfile, build a new TF1 graph
and Session, decode the JPEG to RGB with TensorFlow only to check it and read its size, and serialize a
tf.train.Example with the original bytes. Ours decodes with Pillow in a worker that loaded TensorFlow once.
Each side runs as its own `python` process, so start-up (Beam + TF import, worker spawn) counts for both;
rounds alternate the two and the report takes medians.

    python bench/converter_bench.py [--images=500 --workers=2 --rounds=2 --modes=multi_threading,multi_processing]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "brick", "grass", "gravel")


def build_jpegs(root: str, count: int, seed: int = 0) -> str:
    """`count` JPEG crops (240x320) of scikit-image's photos in `root`, and train.csv listing them."""
    import numpy as np
    from PIL import Image
    from skimage import data as skimage_data

    rng = np.random.default_rng(seed)
    photos = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage_data, name)())
        image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
        photos.append(np.asarray(Image.fromarray(image).resize((640, 480))))
    rows = []
    for i in range(count):
        label = i % len(PHOTOS)
        y, x = rng.integers(0, 480 - 240), rng.integers(0, 640 - 320)
        path = os.path.join(root, f"{PHOTOS[label]}_{i:05d}.jpg")
        Image.fromarray(photos[label][y:y + 240, x:x + 320]).save(path, quality=90)
        rows.append(f"{path},{PHOTOS[label]}")
    csv_path = os.path.join(root, "train.csv")
    with open(csv_path, "w") as handle:
        handle.write("\n".join(rows) + "\n")
    with open(os.path.join(root, "labels.txt"), "w") as handle:
        handle.write("\n".join(PHOTOS) + "\n")
    return csv_path


# --- the reference script's per-image logic, ported to Python 3 (run in its own process) -------------------
def reference_convert(line: str, categories: list[str]):
    import tensorflow as tf

    path, label = line.split(",")
    if label not in categories:
        return  # the reference skips unknown labels silently
    graph = tf.Graph()
    with graph.as_default():  # a new graph and Session per image, as the original builds one per image
        encoded_input = tf.compat.v1.placeholder(tf.string)
        decoded = tf.image.decode_jpeg(encoded_input, channels=3)
        with tf.compat.v1.Session(graph=graph) as session:
            with tf.io.gfile.GFile(path, "rb") as handle:
                encoded = handle.read()
            image = session.run(decoded, feed_dict={encoded_input: encoded})
    assert image.ndim == 3 and image.shape[2] == 3

    def ints(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def text(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    example = tf.train.Example(features=tf.train.Features(feature={
        "image/height": ints(image.shape[0]), "image/width": ints(image.shape[1]),
        "image/colorspace": text(b"RGB"), "image/channels": ints(3),
        "image/class/label": ints(categories.index(label) + 1), "image/class/synset": text(label.encode()),
        "image/format": text(b"JPEG"), "image/filename": text(os.path.basename(path).encode()),
        "image/encoded": text(encoded)}))
    yield example.SerializeToString()


def run_reference(csv_path: str, labels_path: str, output_dir: str, beam_args: list[str]) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    with open(labels_path) as handle:
        categories = [line.rstrip() for line in handle if line.strip()]
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner", *beam_args])) as pipeline:
        (pipeline | beam.io.ReadFromText(csv_path)
         | beam.FlatMap(reference_convert, categories)
         | beam.io.WriteToTFRecord(os.path.join(output_dir, "train")))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def count_records(pattern_dir: str) -> int:
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(pattern_dir, "train-*"))
    return sum(1 for _ in tf.data.TFRecordDataset(files))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="multi_threading,multi_processing", help="direct_running_mode values")
    parser.add_argument("--reference_only", nargs=3, metavar=("CSV", "LABELS", "OUT"), help=argparse.SUPPRESS)
    args, beam_args = parser.parse_known_args()
    if args.reference_only:
        run_reference(*args.reference_only, beam_args)
        return

    root = tempfile.mkdtemp(prefix="converter-bench-")
    csv_path = build_jpegs(root, args.images)
    labels_path = os.path.join(root, "labels.txt")
    print(f"{args.images} JPEGs (240x320, scikit-image photos), DirectRunner with {args.workers} workers, "
          f"{args.rounds} rounds, {os.cpu_count()} CPUs; wall time per run includes process start-up")
    for mode in args.modes.split(","):
        layout = [f"--direct_num_workers={args.workers}", f"--direct_running_mode={mode}"]
        commands = {
            "ours": [sys.executable, "-m", "data.jpeg_to_tf_record", f"--train_csv={csv_path}",
                     f"--labels_file={labels_path}", f"--output_dir={root}/ours", *layout],
            "reference port": [sys.executable, os.path.abspath(__file__), "--reference_only", csv_path,
                               labels_path, f"{root}/reference", *layout],
        }
        seconds = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                seconds[name].append(timed(command))
        for name, output in (("ours", "ours"), ("reference port", "reference")):
            written = count_records(f"{root}/{output}")
            assert written == args.images, f"{name} wrote {written} of {args.images} records"
        rates = {name: args.images / statistics.median(times) for name, times in seconds.items()}
        print(f"{mode}:")
        for name, times in seconds.items():
            print(f"  {name:15s} {rates[name]:7.1f} images/s  (runs: {', '.join(f'{t:.1f}s' for t in times)})")
        print(f"  ratio ours/reference port: {rates['ours'] / rates['reference port']:.2f}x (target >= 2x)")

if __name__ == "__main__":
    main()
