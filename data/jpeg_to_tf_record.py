"""Converts images + labels (or boxes) into the TFRecords the trainers read, on Apache Beam.

The interface of Google's tensorflow/tpu tools/datasets/jpeg_to_tf_record.py (which no longer runs on
Python 3), plus three more layouts:

    # classification, image_path,label CSVs (the reference script's flags)
    python -m data.jpeg_to_tf_record --train_csv=train.csv --validation_csv=eval.csv \\
        [--labels_file=labels.txt] --output_dir=OUT [--project_id=P] [--runner=DirectRunner|DataflowRunner]
    # classification, one sub-folder per class (SageMaker's layout), seeded train/validation split
    python -m data.jpeg_to_tf_record --image_folders=photos/ --validation_fraction=0.1 --output_dir=OUT
    # detection, COCO instances JSON (labels = category ids, as create_coco_tf_record.py writes them)
    python -m data.jpeg_to_tf_record --train_coco_json=instances_train.json --train_image_dir=train/ \\
        --validation_coco_json=instances_val.json --validation_image_dir=val/ --output_dir=OUT
    # detection, path,label,xmin,ymin,xmax,ymax CSVs
    python -m data.jpeg_to_tf_record --train_boxes_csv=train.csv --validation_boxes_csv=val.csv \\
        --box_coordinates=normalized|pixels --output_dir=OUT

Output in OUT: train-SSSSS-of-NNNNN, validation-SSSSS-of-NNNNN (tf.train.Example, the documented keys,
1-based labels), labels.txt (line i = label i+1), rejected.csv (split, origin, path, reason, detail).
Every image is decoded once, to check it and read its size. JPEG files (RGB or grayscale) keep their bytes;
anything else (PNG, CMYK or RGBA JPEG, ...) is converted to RGB (transparency on white) and stored as JPEG
quality 95. Missing or corrupt files, unknown labels and bad boxes are counted (Beam metrics) and listed in
rejected.csv, never dropped silently; a summary prints counts per class and per rejection reason.

How it runs: the launcher lists the images, deals each split into shards in a seeded random order and stages
each shard's listing as a file; the pipeline's elements are the shards, and one worker reads, checks and
writes a whole shard (images never pass through the runner). The files appear under their final names only
once every shard is written. The same listing gives the same files byte for byte, on any runner and worker
count (given the same shard count). On the DirectRunner the default is one worker process per CPU
(DIRECT_RUNNING_MODE, chosen with bench/converter_bench.py). Other arguments (--project, --region,
--temp_location, --direct_num_workers, ...) go to Beam's PipelineOptions as they are.
"""

import argparse
import atexit
import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import glob
import io
import math
import os
import random
import secrets
import shutil
import sys
import tempfile
import time

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from PIL import Image, UnidentifiedImageError

from core import dataflow_package, tfrecord_framing
from core.errors import last_line
from data import example_codec, image_sources
from data.image_sources import SPLITS, SourceError, SourceImage

METRICS_NAMESPACE = "jpeg_to_tf_record"
REJECTED_FILE = "rejected.csv"
REJECTED_HEADER = "split,origin,path,reason,detail"
JPEG_QUALITY = 95
BOX_TOLERANCE = 0.01  # normalized coordinates this far outside [0, 1] are rounding, clipped; further is an error
TARGET_SHARD_BYTES = 150 * 2 ** 20
SIZE_SAMPLE = 1000  # files whose sizes are read to estimate the output size
SHUFFLE_SEED = 0  # of the order images are dealt into shards
TEMP_PREFIX = ".jpeg_to_tf_record-"  # the run's temporary folder in the output folder
READ_THREADS, READ_AHEAD = 16, 64  # remote files fetched at once, and at most this many ahead
# The DirectRunner's default mode (one worker per CPU), chosen with bench/converter_bench.py (README,
# "From images to TFRecords": 13% faster per image than threads on 2 CPUs, and not capped by the GIL).
DIRECT_RUNNING_MODE = "multi_processing"


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _read_bytes(path: str) -> bytes:
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return handle.read()
    except Exception as error:  # the filesystem's own not-found / permission error
        raise Rejected("missing_file", str(error).splitlines()[0][:300]) from None


def _read_ahead(paths: list[str]):
    """(path's bytes or its Rejected) in order. Remote files (gs://: tens of ms each) are fetched READ_THREADS
    at a time, at most READ_AHEAD ahead of the decoding; local ones are read in turn (a thread costs more)."""

    def read(path):
        try:
            return _read_bytes(path)
        except Rejected as rejection:
            return rejection

    if not any("://" in path for path in paths):
        yield from map(read, paths)
        return
    with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
        pending = collections.deque()
        for path in paths:
            pending.append(pool.submit(read, path))
            if len(pending) > READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _decode(encoded: bytes) -> tuple[bytes, int, int, str]:
    """(bytes to store, height, width, how it was stored): JPEG RGB/grayscale bytes as they are, the rest as RGB
    JPEG."""
    try:
        image = Image.open(io.BytesIO(encoded))
        width, height = image.size
        keep = image.format == "JPEG" and image.mode in ("RGB", "L")
        if keep:
            # Verifying needs every coefficient entropy-decoded (a truncated or broken stream fails there),
            # not the pixels: libjpeg's 1/8 scale skips most of the inverse DCT (55-70% of a full decode's time
            # on camera-size photos, bench/converter_bench.py).
            image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise Rejected("corrupt_image", str(error).splitlines()[0][:300]) from None
    if keep:
        return encoded, height, width, "kept"
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        rgb = image.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), height, width, f"reencoded_{image.format or 'unknown'}_{image.mode}".lower()


def _normalized_box(obj, height: int, width: int, pixels: bool) -> tuple:
    ymin, xmin, ymax, xmax = obj.box
    if pixels:
        ymin, ymax, xmin, xmax = ymin / height, ymax / height, xmin / width, xmax / width
    if not all(math.isfinite(v) for v in (ymin, xmin, ymax, xmax)) or ymin >= ymax or xmin >= xmax:
        raise Rejected("invalid_box", f"box {obj.box} of '{obj.label}' has min >= max")
    if min(ymin, xmin) < -BOX_TOLERANCE or max(ymax, xmax) > 1 + BOX_TOLERANCE:
        unit = "pixels" if pixels else "normalized"
        raise Rejected("box_outside_image", f"box {obj.box} ({unit}) of '{obj.label}' lies outside the "
                                            f"{width}x{height} image")
    return tuple(min(max(v, 0.0), 1.0) for v in (ymin, xmin, ymax, xmax))


def _item_labels(item: SourceImage, label_ids: dict[str, int]) -> list[str]:
    if item.problem:
        raise Rejected(*item.problem)
    labels = [obj.label for obj in item.objects] if item.detection else [item.label]
    for name in labels:
        if name not in label_ids:
            raise Rejected("unknown_label", f"label '{name}' is not in the labels file")
    return labels


def convert_image(item: SourceImage, labels: list[str], label_ids: dict[str, int], encoded: bytes):
    """(tf.train.Example, how the image was stored) of a listed image and its file's bytes; raises Rejected."""
    encoded, height, width, stored = _decode(encoded)
    file_name = item.path.rpartition("/")[2]
    if item.detection:
        boxes = [_normalized_box(obj, height, width, item.pixels) for obj in item.objects]
        areas = [obj.area if obj.area is not None else
                 (b[2] - b[0]) * height * (b[3] - b[1]) * width for obj, b in zip(item.objects, boxes)]
        example = example_codec.detection_example(
            encoded, boxes, [label_ids[name] for name in labels], height=height, width=width,
            image_format="jpeg", source_id=item.source_id or file_name, filename=file_name,
            class_names=labels, is_crowd=[obj.is_crowd for obj in item.objects], areas=areas)
    else:
        example = example_codec.classification_example(
            encoded, label_ids[item.label], height=height, width=width, image_format="JPEG",
            filename=file_name, synset=item.label)
    return example, stored


@dataclasses.dataclass(frozen=True)
class Shard:
    """One output file and the images that go in it; one Beam element, converted and written by one worker."""
    split: str
    listing: str     # JSON lines of its SourceImages, staged in the run's temporary folder
    temp_path: str   # written here; renamed to final_path once every shard of the run is written
    final_path: str


class ConvertShard(beam.DoFn):
    """Shard -> its TFRecord file at temp_path (yields the shard), and a rejection row per image it could not
    take on the `rejected` output.

    A worker reads, checks and writes a whole shard itself: only the shard's name goes through the runner,
    where a DoFn per image sent every encoded image through Beam's data plane twice (to a sink stage, and
    on the DirectRunner through the launching process): 43% of the time in a py-spy profile of 50,000 images.
    The file's content depends on the listing alone, so a retried shard writes the same bytes."""

    REJECTED = "rejected"

    def __init__(self, labels: list[str]):
        self._labels = labels

    def setup(self):
        self._label_ids = {name: index + 1 for index, name in enumerate(self._labels)}

    def process(self, shard: Shard):
        with FileSystems.open(shard.listing, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            items = [image_sources.from_json(line) for line in handle.read().decode().splitlines()]
        counts = collections.Counter()
        with FileSystems.create(shard.temp_path, compression_type=CompressionTypes.UNCOMPRESSED) as output:
            contents = _read_ahead([item.path for item in items if not item.problem])
            for item in items:
                encoded = None if item.problem else next(contents)  # in step with the listing, whatever happens
                try:
                    labels = _item_labels(item, self._label_ids)
                    if isinstance(encoded, Rejected):
                        raise encoded
                    example, stored = convert_image(item, labels, self._label_ids, encoded)
                except Rejected as rejection:
                    counts[f"{shard.split}/rejected/{rejection.reason}"] += 1
                    yield beam.pvalue.TaggedOutput(self.REJECTED, _csv_row(
                        [shard.split, item.origin, item.path, rejection.reason, rejection.detail]))
                    continue
                # Map keys sorted: the same bytes in every process and run.
                tfrecord_framing.write_record(output, example.SerializeToString(deterministic=True))
                counts[f"{shard.split}/written"] += 1
                for name in labels:
                    counts[f"{shard.split}/class/{name}"] += 1
                if stored != "kept":
                    counts[f"{shard.split}/{stored}"] += 1
        for name, value in sorted(counts.items()):
            Metrics.counter(METRICS_NAMESPACE, name).inc(value)
        yield shard


def _csv_row(fields) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def estimate_shards(items: list[SourceImage], target_bytes: int = TARGET_SHARD_BYTES) -> int:
    """Shards of about target_bytes, from the listed files' sizes (a sample of them for large inputs)."""
    paths = [item.path for item in items if not item.problem]
    if not paths:
        return 1
    # A seeded random sample: a stride would follow any period in the listing (e.g. alternating camera sizes).
    sample = random.Random(SHUFFLE_SEED).sample(paths, min(len(paths), SIZE_SAMPLE))
    sizes = []
    for result in FileSystems.match(sample):
        sizes.extend(metadata.size_in_bytes for metadata in result.metadata_list)
    if not sizes:
        return 1
    estimated_total = sum(sizes) / len(sizes) * len(paths)
    return max(1, math.ceil(estimated_total / target_bytes))


def shard_count(items: list[SourceImage], requested: int, local_workers: int) -> int:
    """--num_shards, else shards of ~150 MB; on the DirectRunner more than one of those is rounded up to a
    multiple of its workers, so that none of them idles while another writes the last shard."""
    if requested:
        return requested
    count = estimate_shards(items)
    if count > 1 and local_workers > 1:
        count = min(len(items), math.ceil(count / local_workers) * local_workers)
    return count


def plan_shards(items: list[SourceImage], num_shards: int) -> list[list[SourceImage]]:
    """The split's images dealt into num_shards lists in one seeded random order: every shard holds every
    class (listings are often sorted by class) and the same listing always gives the same files."""
    order = list(range(len(items)))
    random.Random(SHUFFLE_SEED).shuffle(order)
    return [[items[i] for i in order[shard::num_shards]] for shard in range(num_shards)]


def stage_shards(items: list[SourceImage], output_dir: str, temp_dir: str, requested_shards: int,
                 local_workers: int) -> list[Shard]:
    """Writes each shard's listing into temp_dir; returns the shards of both splits. The listings travel as
    files, not in the pipeline: a million SourceImages inside the job graph would be ~200 MB (Dataflow takes
    10 MB) and bz2-compressing it cost the launcher seconds per 10,000 images."""
    shards = []
    for split in SPLITS:
        split_items = [item for item in items if item.split == split]
        if not split_items:
            continue
        count = shard_count(split_items, requested_shards, local_workers)
        for index, shard_items in enumerate(plan_shards(split_items, count)):
            listing = f"{temp_dir}/listing/{split}-{index:05d}.jsonl"
            with FileSystems.create(listing, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                handle.write("".join(image_sources.to_json(item) + "\n" for item in shard_items).encode())
            name = f"{split}-{index:05d}-of-{count:05d}"
            shards.append(Shard(split, listing, f"{temp_dir}/{name}", f"{output_dir}/{name}"))
    return shards


def publish(written: list[Shard], rejected_rows: list[str], shards: list[Shard], output_dir: str,
            temp_dir: str) -> None:
    """Once every shard is written: the shards to their final names, rejected.csv, the temporary folder gone.
    Until then train-*/validation-* hold nothing, so a failed run never leaves a partial set to train on."""
    missing = {shard.final_path for shard in shards} - {shard.final_path for shard in written}
    if missing:
        raise RuntimeError(f"shards {sorted(missing)} were not written")
    FileSystems.rename([shard.temp_path for shard in shards], [shard.final_path for shard in shards])
    with FileSystems.create(f"{output_dir}/{REJECTED_FILE}", compression_type=CompressionTypes.UNCOMPRESSED,
                            mime_type="text/csv") as handle:
        handle.write("".join(f"{row}\n" for row in [REJECTED_HEADER, *sorted(rejected_rows)]).encode())
    remove_folder(temp_dir)


def remove_folder(folder: str) -> None:
    FileSystems.delete([f"{folder}/" if "://" in folder else folder])  # gs://: every object under the prefix


def remove_previous_output(output_dir: str) -> None:
    """Old shards of another count would mix with the new ones under train-*: remove ours (and an interrupted
    run's temporary folder), nothing else."""
    patterns = [f"{output_dir}/{split}-?????-of-?????" for split in SPLITS] + [f"{output_dir}/{REJECTED_FILE}"]
    if "://" in output_dir:  # object stores: the temporary folder is its objects
        patterns.append(f"{output_dir}/{TEMP_PREFIX}*/**")
    else:  # Beam's local match lists files only: an emptied folder would stay
        for folder in glob.glob(os.path.join(glob.escape(output_dir), f"{TEMP_PREFIX}*")):
            shutil.rmtree(folder)
    stale = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    if stale:
        FileSystems.delete(stale)


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="Local folder or gs:// prefix for the TFRecords.")
    parser.add_argument("--train_csv", help="Classification: image_path,label lines for training.")
    parser.add_argument("--validation_csv", help="Classification: image_path,label lines for validation.")
    parser.add_argument("--image_folders", help="Classification: a folder with one sub-folder of images per class.")
    parser.add_argument("--validation_fraction", type=float, default=0.1,
                        help="--image_folders: share of each class held out for validation (by path hash).")
    parser.add_argument("--split_seed", type=int, default=0, help="--image_folders: seed of the split.")
    parser.add_argument("--train_coco_json", help="Detection: COCO instances JSON for training.")
    parser.add_argument("--train_image_dir", default="", help="Folder the training JSON's file_names are in.")
    parser.add_argument("--validation_coco_json", help="Detection: COCO instances JSON for validation.")
    parser.add_argument("--validation_image_dir", default="", help="Folder the validation JSON's file_names are in.")
    parser.add_argument("--train_boxes_csv", help="Detection: path,label,xmin,ymin,xmax,ymax rows for training.")
    parser.add_argument("--validation_boxes_csv", help="Detection: the same for validation.")
    parser.add_argument("--box_coordinates", choices=("normalized", "pixels"), default="normalized",
                        help="--*_boxes_csv: coordinates in [0, 1] or in pixels of the image.")
    parser.add_argument("--labels_file", help="One class name per line (label = line + 1); derived (sorted "
                                              "unique names) and written to OUTPUT_DIR/labels.txt when left out.")
    parser.add_argument("--project_id", help="Google Cloud project (DataflowRunner).")
    parser.add_argument("--runner", help="DirectRunner or DataflowRunner; default Dataflow for gs:// output.")
    parser.add_argument("--num_shards", type=int, default=0, help="Shards per split; 0 sizes them at ~150 MB.")
    return parser.parse_known_args(argv)


def read_sources(args) -> tuple[list[SourceImage], list[str] | None]:
    """All listed images of both splits and, for COCO, its label list."""
    layouts = {"csv": args.train_csv or args.validation_csv, "folders": args.image_folders,
               "coco": args.train_coco_json or args.validation_coco_json,
               "boxes": args.train_boxes_csv or args.validation_boxes_csv}
    chosen = [name for name, given in layouts.items() if given]
    if len(chosen) != 1:
        raise SourceError("give exactly one input layout: --train_csv/--validation_csv, --image_folders, "
                          "--train_coco_json/--validation_coco_json or --train_boxes_csv/--validation_boxes_csv"
                          + (f" (got {', '.join(chosen)})" if chosen else ""))
    layout = chosen[0]
    if layout == "folders":
        return image_sources.read_class_folders(args.image_folders, args.validation_fraction, args.split_seed), None
    items, coco_categories = [], {}
    for split in SPLITS:
        if layout == "csv" and getattr(args, f"{split}_csv"):
            items += image_sources.read_classification_csv(getattr(args, f"{split}_csv"), split)
        elif layout == "boxes" and getattr(args, f"{split}_boxes_csv"):
            items += image_sources.read_boxes_csv(getattr(args, f"{split}_boxes_csv"), split,
                                                  args.box_coordinates == "pixels")
        elif layout == "coco" and getattr(args, f"{split}_coco_json"):
            listed, categories = image_sources.read_coco(getattr(args, f"{split}_coco_json"),
                                                         getattr(args, f"{split}_image_dir"), split)
            items += listed
            coco_categories.update(categories)
    return items, image_sources.coco_labels(coco_categories) if coco_categories else None


def resolve_labels(args, items, coco_labels) -> list[str]:
    if args.labels_file:
        names = [line.strip() for line in image_sources.read_text(args.labels_file).splitlines() if line.strip()]
    else:
        names = coco_labels or image_sources.derive_labels(items)
    if len(set(names)) != len(names):
        raise SourceError(f"the class names {names} repeat a name; each class needs its own line")
    if not names:
        raise SourceError("no class names: the input lists no labels and no --labels_file was given")
    return names


def default_direct_layout() -> tuple[int, str]:
    """(workers, mode) of a DirectRunner run when the command line gives neither: one worker per CPU this
    process may use."""
    return len(os.sched_getaffinity(0)), DIRECT_RUNNING_MODE


def pipeline_options(args, beam_args) -> PipelineOptions:
    runner = args.runner or ("DataflowRunner" if args.output_dir.startswith("gs://") else "DirectRunner")
    options = {"runner": runner}
    if runner == "DataflowRunner":
        package_folder = tempfile.mkdtemp(prefix="jpeg_to_tf_record-package-")
        atexit.register(shutil.rmtree, package_folder, True)  # staged by pipeline.run(), then not needed
        options.update(job_name=f"preprocess-images-{time.strftime('%y%m%d-%H%M%S')}",
                       temp_location=f"{args.output_dir}/tmp", staging_location=f"{args.output_dir}/tmp/staging",
                       # Workers need this repository's data package (and Pillow); not TensorFlow.
                       setup_file=dataflow_package.setup_file_copy(package_folder))
        if args.project_id:
            options["project"] = args.project_id
    elif runner in ("DirectRunner", "SwitchingDirectRunner"):
        options["direct_num_workers"], options["direct_running_mode"] = default_direct_layout()
    # Explicit Beam arguments (e.g. --temp_location, --setup_file, --sdk_container_image) win over these defaults.
    return PipelineOptions(beam_args, **{k: v for k, v in options.items()
                                         if not any(a.startswith(f"--{k}") for a in beam_args)})


def build_pipeline(pipeline, shards: list[Shard], labels: list[str], output_dir: str, temp_dir: str) -> None:
    converted = (pipeline
                 | "Shards" >> beam.Create(shards, reshuffle=True)  # reshuffled: spread over the workers
                 | "Convert and write" >> beam.ParDo(ConvertShard(labels)).with_outputs(
                     ConvertShard.REJECTED, main="written"))
    (converted.written
     | "Every shard written" >> beam.combiners.ToList()
     | "Publish" >> beam.Map(publish, beam.pvalue.AsList(converted[ConvertShard.REJECTED]), shards, output_dir,
                             temp_dir))


def summarize(result) -> dict[str, int]:
    """{counter name: value} of this run's Beam metrics (committed where the runner has them)."""
    counts = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + int(value or 0)
    return counts


def print_summary(counts: dict[str, int], listed: dict[str, int], output_dir: str) -> None:
    for split in SPLITS:
        if not listed.get(split):
            continue
        written = counts.get(f"{split}/written", 0)
        print(f"{split}: {written} of {listed[split]} images written")
        for kind in ("class", "rejected"):
            for name, value in sorted(counts.items()):
                if name.startswith(f"{split}/{kind}/"):
                    print(f"  {kind} {name.split('/', 2)[2]}: {value}")
        for name, value in sorted(counts.items()):
            if name.startswith(f"{split}/reencoded_"):
                print(f"  stored as JPEG ({name.split('/', 1)[1][len('reencoded_'):]}): {value}")
    if any("/rejected/" in name for name in counts):
        print(f"rejected images and why: {output_dir}/{REJECTED_FILE}")


@contextlib.contextmanager
def _temporary_files_inside_a_folder_removed_after():
    """Beam's local runner leaves folders in TMPDIR at every run (beam-temp*, tmp*, never removed): this
    process's temporary files go into one folder that is removed when the run ends."""
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="jpeg_to_tf_record-") as folder:
        tempfile.tempdir = folder
        try:
            yield
        finally:
            tempfile.tempdir = previous


def _remove_quietly(folder: str) -> None:
    try:
        remove_folder(folder)
    except Exception:  # noqa: BLE001 - already failing: the next run removes what is left (remove_previous_output)
        pass


def main(argv=None) -> int:
    args, beam_args = _parse_args(sys.argv[1:] if argv is None else argv)
    output_dir = args.output_dir.rstrip("/")
    try:
        items, coco_labels = read_sources(args)
        labels = resolve_labels(args, items, coco_labels)
    except SourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    listed = {split: sum(item.split == split for item in items) for split in SPLITS}
    options = pipeline_options(args, beam_args)
    local_workers = 0
    if options.view_as(StandardOptions).runner in ("DirectRunner", "SwitchingDirectRunner"):
        local_workers = options.view_as(DirectOptions).direct_num_workers or os.cpu_count()  # Beam's 0: all
    temp_dir = f"{output_dir}/{TEMP_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    try:
        FileSystems.mkdirs(output_dir) if not FileSystems.exists(output_dir) else None
        remove_previous_output(output_dir)
        with FileSystems.create(f"{output_dir}/labels.txt") as handle:
            handle.write(("\n".join(labels) + "\n").encode())
        shards = stage_shards(items, output_dir, temp_dir, args.num_shards, local_workers)
    except (OSError, BeamIOError) as error:
        _remove_quietly(temp_dir)
        print(f"error: cannot write to {output_dir}: {last_line(error)}; --output_dir must be a folder (local or "
              f"gs://bucket/prefix) this job can create and write", file=sys.stderr)
        return 2
    print(f"listed {listed['train']} training and {listed['validation']} validation images, {len(labels)} classes")
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, shards, labels, output_dir, temp_dir)
    try:
        with _temporary_files_inside_a_folder_removed_after():
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as error:  # noqa: BLE001 - Beam wraps the workers' errors; they logged the traceback above
        _remove_quietly(temp_dir)
        print(f"error: the conversion stopped: {last_line(error)}\nNothing was published: {output_dir} holds no "
              f"train-*/validation-* shards and no temporary files of this run. Fix the cause (for 'No space "
              f"left on device': free space there) and rerun the same command.", file=sys.stderr)
        return 1
    print_summary(summarize(result), listed, output_dir)
    return 0


if __name__ == "__main__":
    # Through the importable module, so that its classes (Shard) pickle by that name for the workers.
    from data import jpeg_to_tf_record

    sys.exit(jpeg_to_tf_record.main())
