"""Images/s converting the same real JPEGs + CSV to TFRecords: ours (`python -m data.jpeg_to_tf_record`) vs. a
Python 3 port of the reference script (tensorflow/tpu tools/datasets/jpeg_to_tf_record.py), measured at the
scale the converter exists for. Target: ours >= 2x the reference's images/s.

The photo set: `--images` (default 50,000) distinct JPEGs cut from the photos bundled with scikit-image
(astronaut, coffee, rocket, retina, Hubble deep field, textures, ...): each a random rescale and crop of one
photo, randomly mirrored, at a camera size (even index 320x240, odd 640x480), re-encoded at a random quality
in [75, 95]; the grey photos stay single-channel JPEGs. The label is the photo it came from. Built once into
`--cache_dir` (1.6 GB for 50,000) and reused while its manifest matches.

What each side does, per run (each run is a fresh `python` process, so start-up counts for both):
- ours: the product as users run it, with its defaults (DirectRunner, one worker process per CPU): list the
  CSV, stage the shards' listings, check every image (decoded at libjpeg's 1/8 scale), keep the JPEG bytes,
  each worker writing whole ~150 MB shards; rejected.csv; the summary.
- reference port: the original's per-image logic (read with gfile, a new TF1 Graph and Session per image,
  decode to RGB with TensorFlow to check it and read its size, a tf.train.Example of the original bytes) on
  Beam: ReadFromText(CSV) -> Reshuffle -> FlatMap -> WriteToTFRecord. The Reshuffle is not in the original;
  it is added so both sides get the same parallelism (fused to ReadFromText, one small CSV is one bundle:
  one worker). Both sides run on the same DirectRunner worker count and mode.

Each side runs at two set sizes (the first `--small` images and all `--images`), rounds alternate the sides,
and the report takes the median of each. The per-image cost is the slope between the two sizes (so start-up
drops out), printed as microseconds of wall time per image on this machine and as CPU-microseconds (slope x
workers); the total wall time at the large size is printed too.

Also measured: ours on `--other_layouts` (default: in-process, and threads as many as the default's processes),
to check the default layout against them; and, in this process, the converter's check alone on the first
2,000 images, against a full Pillow decode per camera size, and on one thread against as many as the workers.

    python bench/converter_bench.py [--images=50000 --small=10000 --rounds=2 --cache_dir=~/.cache/...]
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # the product's own modules (data, core), when run as `python bench/converter_bench.py`
# scikit-image's bundled photographs (not its renders or document scans); grey ones stay grey.
PHOTOS = ("astronaut", "camera", "cat", "coffee", "rocket", "coins", "hubble_deep_field",
          "immunohistochemistry", "retina", "grass", "gravel", "brick", "clock", "motorcycle")
SIZES = ((320, 240), (640, 480))  # (width, height): even index, odd index
SET_VERSION = 3  # bump when the recipe below changes, so caches rebuild
IMAGES_PER_FOLDER = 1000


def _photo(name: str):
    import numpy as np
    from skimage import data as skimage_data

    image = skimage_data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage_data, name)()
    image = np.asarray(image)
    return np.ascontiguousarray(image[..., :3] if image.ndim == 3 else image)


def _build_range(args) -> list[tuple[str, str, str]]:
    """Writes images start..stop-1 under root; returns (relative path, label, sha1) for each."""
    root, start, stop, seed = args
    import io

    import numpy as np
    from PIL import Image

    photos = {name: Image.fromarray(_photo(name)) for name in PHOTOS}
    rows = []
    for index in range(start, stop):
        rng = np.random.default_rng([seed, index])
        name = PHOTOS[index % len(PHOTOS)]
        width, height = SIZES[index % 2]
        photo = photos[name]
        # A window spanning 40-100% of the photo along its tighter side, resized to the camera size.
        span = min(photo.width / width, photo.height / height) * rng.uniform(0.4, 1.0)
        box_width, box_height = width * span, height * span
        left = rng.uniform(0, photo.width - box_width)
        top = rng.uniform(0, photo.height - box_height)
        crop = photo.resize((width, height), Image.BILINEAR, box=(left, top, left + box_width, top + box_height))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=int(rng.integers(75, 96)))
        relative = f"{index // IMAGES_PER_FOLDER:03d}/{name}_{index:06d}.jpg"
        os.makedirs(os.path.join(root, os.path.dirname(relative)), exist_ok=True)
        with open(os.path.join(root, relative), "wb") as handle:
            handle.write(buffer.getvalue())
        rows.append((relative, name, hashlib.sha1(buffer.getvalue()).hexdigest()))
    return rows


def build_photo_set(cache_dir: str, count: int, seed: int = 0, processes: int | None = None) -> str:
    """The photo set of `count` images in cache_dir (built, or reused when its manifest matches); returns
    cache_dir/all.csv (absolute image path,label per line, in index order) after checking all are distinct."""
    import multiprocessing

    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    manifest_path = os.path.join(cache_dir, "manifest.json")
    wanted = {"version": SET_VERSION, "seed": seed, "count": count}
    csv_path = os.path.join(cache_dir, "all.csv")
    if os.path.exists(manifest_path):
        with open(manifest_path) as handle:
            if json.load(handle) == wanted and os.path.exists(csv_path):
                return csv_path
    shutil.rmtree(cache_dir, ignore_errors=True)  # another recipe's set, or an interrupted build
    os.makedirs(cache_dir)
    chunk = 500
    ranges = [(cache_dir, start, min(start + chunk, count), seed) for start in range(0, count, chunk)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes or os.cpu_count()) as pool:
        rows = [row for part in pool.map(_build_range, ranges) for row in part]
    digests = {digest for _, _, digest in rows}
    if len(digests) != count:
        raise SystemExit(f"the photo set repeats images ({count - len(digests)} duplicates): change the recipe")
    with open(csv_path, "w") as handle:
        handle.writelines(f"{os.path.join(cache_dir, relative)},{label}\n" for relative, label, _ in rows)
    with open(os.path.join(cache_dir, "labels.txt"), "w") as handle:
        handle.write("\n".join(sorted(PHOTOS)) + "\n")
    with open(manifest_path, "w") as handle:
        json.dump(wanted, handle)
    total = sum(os.path.getsize(os.path.join(cache_dir, relative)) for relative, _, _ in rows)
    print(f"built {count} distinct JPEGs ({total / 2 ** 30:.2f} GiB) in {cache_dir} in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return csv_path


def subset_csv(all_csv: str, count: int, directory: str) -> str:
    path = os.path.join(directory, f"first_{count}.csv")
    with open(all_csv) as source, open(path, "w") as target:
        for number, line in enumerate(source):
            if number == count:
                break
            target.write(line)
    return path


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
         | beam.Reshuffle()  # not in the original: spreads the CSV's lines over the workers (see the docstring)
         | beam.FlatMap(reference_convert, categories)
         | beam.io.WriteToTFRecord(os.path.join(output_dir, "train")))


# --- measuring ---------------------------------------------------------------------------------------------
def timed(command: list[str], temp_dir: str) -> float:
    """Seconds the command took; its temporary files (Beam's local runner leaves some) go into temp_dir."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": temp_dir})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def count_records(directory: str) -> int:
    """Records in directory/train-*, every checksum checked (the product's own framing: no TensorFlow here)."""
    import glob

    from core.tfrecord_framing import next_record

    count = 0
    for path in glob.glob(os.path.join(directory, "train-*")):
        with open(path, "rb") as handle:
            while True:
                record, damage = next_record(handle)
                if damage:
                    raise SystemExit(f"{path}: a {damage} record after {count} good ones")
                if record is None:
                    break
                count += 1
    return count


def default_layout() -> tuple[int, str]:
    """The DirectRunner worker count and mode ours uses when the command line gives none."""
    from data import jpeg_to_tf_record

    return jpeg_to_tf_record.default_direct_layout()


def decode_costs(all_csv: str, count: int, threads: int) -> tuple[dict, float, float]:
    """In this process: microseconds per image of a full Pillow decode and of the converter's check
    (data.jpeg_to_tf_record._decode) on one thread, per camera size, over the set's first `count` images (files
    pre-read); and of the check over all of them on one thread and on `threads` threads."""
    import concurrent.futures
    import io

    from PIL import Image

    from data import jpeg_to_tf_record

    with open(all_csv) as handle:
        paths = [line.split(",")[0] for _, line in zip(range(count), handle)]
    encoded = {}
    for path in paths:
        with open(path, "rb") as image_file:
            data = image_file.read()
        encoded.setdefault(Image.open(io.BytesIO(data)).size, []).append(data)

    def full(data):
        Image.open(io.BytesIO(data)).load()

    costs = {}
    for size, images in sorted(encoded.items()):
        costs[size] = {}
        for name, function in (("full decode", full), ("check", jpeg_to_tf_record._decode)):
            started = time.perf_counter()
            for data in images:
                function(data)
            costs[size][name] = (time.perf_counter() - started) / len(images) * 1e6

    everything = [data for images in encoded.values() for data in images]

    def check_all(parts: int) -> float:
        def check(part):
            for data in part:
                jpeg_to_tf_record._decode(data)

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(parts) as pool:
            list(pool.map(check, [everything[i::parts] for i in range(parts)]))
        return (time.perf_counter() - started) / len(everything) * 1e6

    return costs, check_all(1), check_all(threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000, help="the large set size (and the cache's size)")
    parser.add_argument("--small", type=int, default=10_000, help="the small set size (the slope's other end)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--other_layouts", default="in_memory:1,multi_threading:0",
                        help="ours also on these DirectRunner mode:workers (0: as many as the default), to "
                             "check the default layout against them; empty: none")
    parser.add_argument("--cache_dir", default=os.path.join("~", ".cache", "converter-bench"),
                        help="where the photo set is built once and reused")
    parser.add_argument("--reference_only", nargs=3, metavar=("CSV", "LABELS", "OUT"), help=argparse.SUPPRESS)
    args, beam_args = parser.parse_known_args()
    if args.reference_only:
        run_reference(*args.reference_only, beam_args)
        return
    if not 0 < args.small < args.images:
        parser.error("need 0 < --small < --images")

    cache_dir = os.path.join(os.path.expanduser(args.cache_dir), f"{args.images}")
    all_csv = build_photo_set(cache_dir, args.images)
    labels_path = os.path.join(cache_dir, "labels.txt")
    workers, mode = default_layout()
    # name -> (side, workers, mode); the first two are the comparison, on the same layout.
    runs = {"ours": ("ours", workers, mode), "reference port": ("reference", workers, mode)}
    for layout in filter(None, args.other_layouts.split(",")):
        other_mode, _, count = layout.partition(":")
        other_workers = int(count) or workers
        if (other_workers, other_mode) != (workers, mode):
            runs[f"ours, {other_mode} x{other_workers}"] = ("ours", other_workers, other_mode)
    scratch = tempfile.mkdtemp(prefix="converter-bench-")
    try:
        csvs = {args.small: subset_csv(all_csv, args.small, scratch), args.images: all_csv}
        print(f"photo set: {args.images} distinct JPEGs (half 320x240, half 640x480) from scikit-image's photos; "
              f"{os.cpu_count()} CPUs; ours and the reference port both on DirectRunner {mode} x{workers} (ours' "
              f"default); sizes {args.small} and {args.images}; {args.rounds} rounds, the order reversed every "
              f"other round", flush=True)

        def command(name: str, count: int) -> list[str]:
            side, run_workers, run_mode = runs[name]
            output = os.path.join(scratch, "output")
            shutil.rmtree(output, ignore_errors=True)
            layout = [f"--direct_num_workers={run_workers}", f"--direct_running_mode={run_mode}"]
            if side == "ours":
                return [sys.executable, "-m", "data.jpeg_to_tf_record", f"--train_csv={csvs[count]}",
                        f"--labels_file={labels_path}", f"--output_dir={output}", *layout]
            return [sys.executable, os.path.abspath(__file__), "--reference_only", csvs[count], labels_path,
                    output, *layout]

        seconds = {(name, count): [] for name in runs for count in csvs}
        for round_index in range(args.rounds):
            for count in csvs:
                for name in (list(runs) if round_index % 2 == 0 else list(runs)[::-1]):
                    seconds[name, count].append(timed(command(name, count), scratch))
                    print(f"  round {round_index + 1}: {name:30s} {count:6d} images "
                          f"{seconds[name, count][-1]:6.1f} s", flush=True)
                    written = count_records(os.path.join(scratch, "output"))
                    if written != count:
                        raise SystemExit(f"{name} wrote {written} of {count} records")
        wall = {key: statistics.median(values) for key, values in seconds.items()}
        slope = {name: (wall[name, args.images] - wall[name, args.small]) / (args.images - args.small)
                 for name in runs}
        print(f"{'':30s}{'us/image':>9s}{'CPU-us/image':>14s}{'images/s':>10s}{'start-up s':>12s}"
              f"{f'wall s at {args.images}':>18s}")
        for name, (_, run_workers, _) in runs.items():
            startup = wall[name, args.small] - slope[name] * args.small
            rate = f"{1 / slope[name]:10.0f}" if slope[name] > 0 else f"{'n/a':>10s}"
            print(f"{name:30s}{slope[name] * 1e6:9.0f}{slope[name] * 1e6 * run_workers:14.0f}{rate}"
                  f"{startup:12.1f}{wall[name, args.images]:18.1f}")
        # Sizes too close (a smoke run) can leave a slope in the noise, at or below zero: no ratio then.
        pair = (slope["ours"], slope["reference port"])
        ratio = f"{pair[1] / pair[0]:.2f}x" if min(pair) > 0 else "n/a"
        print(f"per-image ratio ours/reference port: {ratio} (target >= 2x)")
        print(f"wall-time ratio at {args.images} images: "
              f"{wall['reference port', args.images] / wall['ours', args.images]:.2f}x")
        sample = min(2000, args.images)
        costs, one_thread, several = decode_costs(all_csv, sample, workers)
        print(f"checking an image, in one process, the first {sample} images (us/image):")
        for (width, height), cost in costs.items():
            print(f"  {width}x{height}, one thread: full decode {cost['full decode']:.0f}, the converter's check "
                  f"{cost['check']:.0f} ({cost['check'] / cost['full decode']:.0%} of a full decode)")
        print(f"  the check on {workers} threads: {several:.0f} against {one_thread:.0f} on one "
              f"({one_thread / several:.2f}x: the GIL is held for part of it)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
