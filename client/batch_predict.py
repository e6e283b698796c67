"""Batch prediction: an exported model over a collection of images on Apache Beam's RunInference, on the
DirectRunner (every core of this machine) or on Dataflow; the output as AI Platform's batch prediction wrote it.

    python entrypoint.py batch_predict --model_dir=MODEL --input_paths=PATTERN[,PATTERN...] --output_path=OUT \\
        [--data_format=image_files|file_list|jsonl|tf_record] [--batch_size=64] [--top_k=5] [--min_score=0] \\
        [--runner=DirectRunner|DataflowRunner --project=... --region=... --temp_location=gs://... ...]

Input formats (local paths or gs:// everywhere, globs allowed):
  image_files  image files; the key is the file's path
  file_list    text files with one image path or gs:// URI per line (relative paths: from the list's folder)
  jsonl        one instance per line, {"image_bytes": {"b64": ...}, "key": ...} (AI Platform's `text` format),
               or {"content": PATH_OR_URI, "key": ...} (Vertex AI's); without "key" the key is FILE:LINE
  tf_record    records in the training format (image/encoded); the key is image/source_id, else FILE:INDEX

Output, in OUT:
  prediction.results-SSSSS-of-NNNNN   one JSON line per predicted input: {"key", "predictions": [...]}, a
      classifier's top classes [{"label" (1-based), "name", "score", "class" (0-based)}] or a detector's boxes
      [{"box": [ymin, xmin, ymax, xmax] in the input image's pixels, "box_normalized", "label", "name",
      "score"}] with {"image_size": [height, width]}
  prediction.errors_stats-00000-of-00001   first line the counts {"inputs", "predicted", "errors",
      "errors_by_reason"}, then one line per input that could not be predicted {"input", "reason", "error"}
Every input is in exactly one of the two. A bad input never stops the job; a model that cannot be loaded stops
it before anything is written. A rerun into the same OUT replaces the previous run's files.

How it runs: the input files are matched and read on the workers (a list or JSON-lines file by one worker,
its images then spread over all); each worker process loads the SavedModel once (RunInference's shared model)
and calls `serving_default` on batches of encoded images, so decoding happens inside the model on the workers,
exactly as in serving. On the DirectRunner the default is one worker process per CPU, each running TensorFlow
on its share of the cores; on Dataflow the workers get this repository (setup.py) and TensorFlow (a
requirements file written from the image's pins) unless --sdk_container_image or --requirements_file is given.
"""

import argparse
import base64
import binascii
import dataclasses
import io
import json
import os
import sys
import tempfile
import time

from client.served_model import Failure, check_image, failure
from core.errors import UserInputError, first_line, last_line

DATA_FORMATS = ("image_files", "file_list", "jsonl", "tf_record")
RESULTS_PREFIX = "prediction.results"
ERRORS_FILE = "prediction.errors_stats-00000-of-00001"
METRICS_NAMESPACE = "batch_predict"
# Packages a Dataflow worker needs beyond Beam's own to load and call the model (pins: requirements/runtime.in).
DATAFLOW_WORKER_PACKAGES = ("tensorflow", "keras", "pillow", "google-crc32c")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Source:
    """One input as listed: its key and either its bytes or the path to read them from."""
    key: str
    path: str | None = None
    content: bytes | None = None


# --- reading the inputs (on the workers) --------------------------------------------------------------------
def _open(path: str):
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.AUTO)


def _join(folder: str, name: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    return name if "://" in name or name.startswith("/") else FileSystems.join(folder, name)


def sources_of_image_file(path: str):
    yield Source(key=path, path=path)


def sources_of_file_list(path: str):
    """One Source per non-empty line; a relative path is taken from the list file's folder."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    with io.TextIOWrapper(_open(path), encoding="utf-8-sig") as lines:
        for line in lines:
            listed = line.strip()
            if listed:
                yield Source(key=listed, path=_join(folder, listed) if folder else listed)


def sources_of_jsonl(path: str):
    """One Source per non-empty line; a line that is not an instance becomes a failure keyed FILE:LINE."""
    with io.TextIOWrapper(_open(path), encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                instance = json.loads(line)
            except ValueError as error:
                yield failure(where, "bad_line", f"line {number} of {path} is not JSON: {first_line(error)}")
                continue
            if not isinstance(instance, dict):
                yield failure(where, "bad_line", f"line {number} of {path} is not a JSON object")
                continue
            key = str(instance["key"]) if "key" in instance else where
            image = instance.get("image_bytes")
            if isinstance(image, dict) and isinstance(image.get("b64"), str):
                try:
                    yield Source(key=key, content=base64.b64decode(image["b64"], validate=True))
                except (binascii.Error, ValueError) as error:
                    yield failure(key, "bad_line", f"line {number} of {path}: image_bytes.b64 is not base64: "
                                                   f"{first_line(error)}")
            elif isinstance(instance.get("content"), str):
                yield Source(key=key, path=instance["content"])
            else:
                yield failure(key, "bad_line", f"line {number} of {path} has neither {{\"image_bytes\": {{\"b64\": "
                                               f"...}}}} nor {{\"content\": PATH}}")


def sources_of_tf_record(path: str):
    """One Source per record (key: image/source_id, else FILE:INDEX); damaged framing ends the file there
    with one failure naming the record."""
    from core import feature_keys, tfrecord_framing
    from data import example_codec

    with _open(path) as handle:
        index = 0
        while True:
            where = f"{path}:{index}"
            try:
                record, damage = tfrecord_framing.next_record(handle)
            except OSError as error:
                yield failure(where, "unreadable", f"cannot read {path} from record {index} on: {first_line(error)}")
                return
            if damage:
                yield failure(where, "bad_record", f"record {index} of {path} is {damage}; the records after it "
                                                   "in this file were not read")
                return
            if record is None:
                return
            try:
                features = example_codec.Example.FromString(record).features.feature
            except Exception:  # noqa: BLE001 - protobuf's DecodeError
                yield failure(where, "bad_record", f"record {index} of {path} is not a tf.train.Example")
                index += 1
                continue
            source_id = features[feature_keys.SOURCE_ID].bytes_list.value if feature_keys.SOURCE_ID in features else []
            key = source_id[0].decode("utf-8", "replace") if source_id and source_id[0] else where
            encoded = features[feature_keys.IMAGE].bytes_list.value if feature_keys.IMAGE in features else []
            if encoded:
                yield Source(key=key, content=encoded[0])
            else:
                yield failure(key, "bad_record", f"record {index} of {path} has no {feature_keys.IMAGE}")
            index += 1


SOURCES = {"image_files": sources_of_image_file, "file_list": sources_of_file_list, "jsonl": sources_of_jsonl,
           "tf_record": sources_of_tf_record}


def list_inputs(path: str, data_format: str):
    """The inputs one matched file lists (SOURCES); a file that cannot be read to its end (unreadable, not
    text) adds one failure naming it, after the inputs read before the fault, and the job goes on."""
    listed = 0
    try:
        for item in SOURCES[data_format](path):
            listed += 1
            yield item
    except Exception as error:  # noqa: BLE001 - OSError, BeamIOError, UnicodeDecodeError, ...: by filesystem
        yield failure(path, "unreadable", f"cannot read {path} to its end ({listed} inputs listed before): "
                                          f"{first_line(error)}")


def prepare(source: Source):
    """Source -> Instance (its bytes read, its header a format the model decodes, its size), or a failure."""
    if source.content is not None:
        return check_image(source.key, source.content)
    try:
        with _open(source.path) as handle:
            content = handle.read()
    except Exception as error:  # noqa: BLE001 - Beam raises IOError/BeamIOError/FileNotFoundError by filesystem
        return failure(source.key, "unreadable", f"cannot read {source.path}: {first_line(error)}")
    return check_image(source.key, content)


# --- the model, on the workers -----------------------------------------------------------------------------
def _limit_threads(threads: int) -> None:
    """TensorFlow on `threads` cores in this worker process (0: all), so the workers of one machine share its
    cores instead of each claiming all of them."""
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow's runtime already started in this process: it keeps its threads
            pass


def model_handler(model_dir: str, batch_size: int, threads: int, options: dict):
    """A RunInference ModelHandler: loads the SavedModel once per worker process, serves batches of Instances
    and returns each one's results line (or failure) as its inference."""
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class ServingModelHandler(ModelHandler):
        def __init__(self):
            super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)

        def load_model(self):
            from client.served_model import ServedModel

            _limit_threads(threads)
            return ServedModel(model_dir)

        def run_inference(self, batch, model, inference_args=None):
            rows = model.call([instance.key for instance in batch], [instance.content for instance in batch])
            return [PredictionResult(instance, model.result(instance, row, options))
                    for instance, row in zip(batch, rows)]

        def get_num_bytes(self, batch) -> int:
            return sum(len(instance.content) for instance in batch)

        def get_metrics_namespace(self) -> str:
            return METRICS_NAMESPACE

    return ServingModelHandler()


# --- the pipeline ------------------------------------------------------------------------------------------
def write_errors_file(_, failures: list, predicted: int, output_path: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    by_reason = {}
    for item in failures:
        by_reason[item.reason] = by_reason.get(item.reason, 0) + 1
    counts = {"inputs": predicted + len(failures), "predicted": predicted, "errors": len(failures),
              "errors_by_reason": dict(sorted(by_reason.items()))}
    ordered = sorted(failures, key=lambda item: item.input)
    lines = [json.dumps(counts)] + [json.dumps(dataclasses.asdict(item)) for item in ordered]
    with FileSystems.create(f"{output_path}/{ERRORS_FILE}") as handle:
        handle.write(("\n".join(lines) + "\n").encode())


def build_pipeline(pipeline, args, threads: int) -> None:
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import RunInference

    def split(item):
        if isinstance(item, Failure):
            yield beam.pvalue.TaggedOutput("failed", item)
        else:
            yield item

    listed = (pipeline
              | "Patterns" >> beam.Create(args.patterns)
              | "Match" >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
              | "Paths" >> beam.Map(lambda metadata: metadata.path)
              | "Spread files" >> beam.Reshuffle()
              | "List inputs" >> beam.FlatMap(list_inputs, args.data_format)
              | "Split listed" >> beam.FlatMap(split).with_outputs("failed", main="sources"))
    prepared = (listed.sources
                | "Spread inputs" >> beam.Reshuffle()
                | "Read and check" >> beam.Map(prepare)
                | "Split prepared" >> beam.FlatMap(split).with_outputs("failed", main="instances"))
    options = {"top_k": args.top_k, "min_score": args.min_score}
    served = (prepared.instances
              | "RunInference" >> RunInference(model_handler(args.model_dir, args.batch_size, threads, options))
              | "Lines" >> beam.Map(lambda result: result.inference)
              | "Split served" >> beam.FlatMap(split).with_outputs("failed", main="lines"))
    failures = ((listed.failed, prepared.failed, served.failed) | "Every failure" >> beam.Flatten())
    (served.lines
     | "JSON" >> beam.Map(lambda line: json.dumps(line, allow_nan=False))
     | "Write results" >> beam.io.WriteToText(f"{args.output_path}/{RESULTS_PREFIX}",
                                              shard_name_template="-SSSSS-of-NNNNN"))
    predicted = served.lines | "Count predicted" >> beam.combiners.Count.Globally()
    (pipeline
     | "Once" >> beam.Create([None])
     | "Write errors and counts" >> beam.Map(write_errors_file, beam.pvalue.AsList(failures),
                                             beam.pvalue.AsSingleton(predicted), args.output_path))


# --- the launcher ------------------------------------------------------------------------------------------
def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(prog="entrypoint.py batch_predict", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="an exported model directory (local or gs://)")
    parser.add_argument("--input_paths", required=True, help="comma-separated files or globs (local or gs://)")
    parser.add_argument("--output_path", required=True, help="the folder for the results (local or gs://)")
    parser.add_argument("--data_format", default="image_files", choices=DATA_FORMATS)
    parser.add_argument("--batch_size", type=int, default=64, help="images per call of the model")
    parser.add_argument("--top_k", type=int, default=5, help="classes per image (classifiers)")
    parser.add_argument("--min_score", type=float, default=0.0,
                        help="lowest detection score written (detectors; 0: every detection the model returns)")
    parser.add_argument("--runner", default=None, help="DirectRunner (default) or DataflowRunner")
    args, beam_args = parser.parse_known_args(argv)
    for name in ("batch_size", "top_k"):
        if getattr(args, name) < 1:
            raise UserInputError(f"--{name}={getattr(args, name)} must be at least 1")
    args.patterns = [pattern.strip() for pattern in args.input_paths.split(",") if pattern.strip()]
    if not args.patterns:
        raise UserInputError("--input_paths names no file")
    args.output_path = args.output_path.rstrip("/")
    if args.runner == "DataflowRunner":
        local = [f"--{name}={value}" for name, values in (("model_dir", [args.model_dir]),
                                                          ("input_paths", args.patterns),
                                                          ("output_path", [args.output_path]))
                 for value in values if not value.startswith("gs://")]
        if local:
            raise UserInputError(f"{local[0]} is not a gs:// path: Dataflow's workers read the model and the inputs "
                                 "and write the output from Cloud Storage")
    return args, beam_args


def pipeline_options(args, beam_args, scratch: str):
    """Beam's options, with this command's defaults where the command line gives none: on the DirectRunner one
    worker process per CPU; on Dataflow a job name, temp folders next to the output, this repository as a
    package (built from a copy in `scratch`) and TensorFlow's pins as the workers' requirements.
    Explicit Beam arguments win."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from core import dataflow_package
    from data.jpeg_to_tf_record import default_direct_layout

    runner = args.runner or "DirectRunner"
    options = {"runner": runner}
    if runner == "DataflowRunner":
        options.update(job_name=f"batch-predict-{time.strftime('%y%m%d-%H%M%S')}",
                       temp_location=f"{args.output_path}/tmp", staging_location=f"{args.output_path}/tmp/staging",
                       setup_file=dataflow_package.setup_file_copy(scratch), save_main_session=False)
        if not any(a.startswith(("--sdk_container_image", "--requirements_file")) for a in beam_args):
            requirements = os.path.join(scratch, "dataflow_requirements.txt")
            with open(requirements, "w") as handle:
                handle.write("\n".join(dataflow_package.pins(DATAFLOW_WORKER_PACKAGES)) + "\n")
            options["requirements_file"] = requirements
    elif runner in ("DirectRunner", "SwitchingDirectRunner"):
        options["direct_num_workers"], options["direct_running_mode"] = default_direct_layout()
    return PipelineOptions(beam_args, **{k: v for k, v in options.items()
                                         if not any(a.startswith(f"--{k}") for a in beam_args)})


def threads_per_worker(options) -> int:
    """TensorFlow threads for each local worker process: the CPUs shared out (0 = TensorFlow's own choice, on
    remote workers, which run one process per core themselves)."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    if options.view_as(StandardOptions).runner not in ("DirectRunner", "SwitchingDirectRunner"):
        return 0
    cpus = len(os.sched_getaffinity(0))
    workers = options.view_as(DirectOptions).direct_num_workers or cpus
    return max(1, cpus // workers)


def check_inputs(args) -> None:
    """Every pattern matches a file (one listing each), before any worker starts."""
    from apache_beam.io.filesystems import FileSystems

    for pattern in args.patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as error:  # noqa: BLE001 - BeamIOError and the filesystems' own errors
            raise UserInputError(f"--input_paths: cannot list {pattern}: {first_line(error)}") from None
        if not matched:
            raise UserInputError(f"--input_paths: {pattern} matches no file")


def remove_output(output_path: str) -> None:
    """This command's files in the folder: an earlier run's (a rerun must not leave shards whose NNNNN differ),
    or a stopped run's, with the temporary folder of Beam's text sink."""
    from apache_beam.io.filesystems import FileSystems

    patterns = [f"{output_path}/prediction.*", f"{output_path}/beam-temp-{RESULTS_PREFIX}-*"]
    stale = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    folders = sorted({path[:path.index("/", len(output_path) + 1) + 1] for path in stale if "/beam-temp-" in path})
    files = [path for path in stale if "/beam-temp-" not in path]
    if files or folders:
        FileSystems.delete(files + folders)


def main(argv: list[str]) -> int:
    from apache_beam.io.filesystems import FileSystems

    from client.served_model import ServedModel

    try:
        args, beam_args = parse_args(argv)
        check_inputs(args)
        model = ServedModel(args.model_dir)  # here, once: a model that cannot be served stops the job now
        print(f"model: {model.task.title}, {len(model.class_names or [])} class names; data format "
              f"{args.data_format}", file=sys.stderr)
        del model
    except UserInputError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    import apache_beam as beam

    with tempfile.TemporaryDirectory(prefix="batch_predict-") as scratch:
        options = pipeline_options(args, beam_args, scratch)
        try:
            if not FileSystems.exists(args.output_path):
                FileSystems.mkdirs(args.output_path)
            remove_output(args.output_path)
        except Exception as error:  # noqa: BLE001 - BeamIOError, OSError
            print(f"ERROR: cannot write to --output_path={args.output_path}: {first_line(error)}", file=sys.stderr)
            return 2
        # Local worker processes import this repository's modules (the pickled functions name them).
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
        started = time.time()
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, args, threads_per_worker(options))
        previous_tempdir = tempfile.tempdir
        tempfile.tempdir = scratch  # Beam's local runner leaves folders in TMPDIR: in this run's, removed after
        try:
            pipeline.run().wait_until_finish()
        except Exception as error:  # noqa: BLE001 - Beam wraps the workers' errors; they logged the traceback
            print(f"ERROR: batch prediction stopped: {last_line(error)}; nothing of this run was kept in "
                  f"{args.output_path}: fix the cause and rerun the same command", file=sys.stderr)
            try:
                remove_output(args.output_path)
            except Exception:  # noqa: BLE001 - already failing; the rerun removes what is left
                pass
            return 1
        finally:
            tempfile.tempdir = previous_tempdir
    with FileSystems.open(f"{args.output_path}/{ERRORS_FILE}") as handle:
        counts = json.loads(handle.readline())
    print(json.dumps({**counts, "seconds": round(time.time() - started, 1),
                      "results": f"{args.output_path}/{RESULTS_PREFIX}-*",
                      "errors_file": f"{args.output_path}/{ERRORS_FILE}"}))
    return 0
