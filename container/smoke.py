"""Smoke test of the built image, run as a user runs it: each step is the image's own command in a container.

    python container/smoke.py --image=IMAGE [--engine=podman|docker] [--root_image=IMAGE_BUILT_WITH_RUN_AS_0]
    python container/smoke.py --inside        # already inside the image (Cloud Build runs it this way)

Inputs are real photos that ship inside matplotlib (in the image, and in the dev venv): crops of Grace
Hopper's portrait and of a gift-pack photo become a two-class JPEG set (CSV + labels), and the pack pasted
at known boxes onto portrait crops a one-class detection set. The steps, each checked on what it wrote:
--help; the Beam converter (DirectRunner) on both CSVs; a tiny classification job (trains, evaluates,
exports, report, hypertune metric); `predict` and `batch_predict` (Beam) on the exported model; `serve` with
Vertex AI's variables, one request of each kind from inside its container, then SIGTERM (exit 0); a tiny
detection job (AP reported, model exported); `tune`, a two-trial sweep; with --root_image, SageMaker's
`IMAGE train` on an /opt/ml tree only root may write.
Data and job dirs are mounted from the host; the image runs as its own (non-root) user.
Only the standard library, Pillow and matplotlib's sample photos on the host side; exits non-zero on the first failed check.
"""

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from PIL import Image

MOUNT = "/smoke"
CLASSES = ("portrait", "package")


def _sample_photo(name: str) -> Image.Image:
    import matplotlib

    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", name)
    return Image.open(path).convert("RGB")


def _random_crop(photo: Image.Image, rng: random.Random, size: int) -> Image.Image:
    side = int(min(photo.size) * rng.uniform(0.5, 0.9))
    left, top = rng.randrange(photo.width - side + 1), rng.randrange(photo.height - side + 1)
    crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def make_inputs(work: str, root: str) -> None:
    """JPEGs and the converter's CSVs under work/inputs; the CSVs name the files as the container sees them."""
    rng = random.Random(0)
    portrait, pack = _sample_photo("grace_hopper.jpg"), _sample_photo("Minduka_Present_Blue_Pack.png")
    inputs = os.path.join(work, "inputs")
    for split, count in (("train", 32), ("validation", 12)):
        rows = []
        for label, photo in zip(CLASSES, (portrait, pack)):
            os.makedirs(os.path.join(inputs, split, label), exist_ok=True)
            for i in range(count):
                name = f"{split}/{label}/{i:03d}.jpg"
                _random_crop(photo, rng, 64).save(os.path.join(inputs, name), quality=90)
                rows.append((f"{root}/inputs/{name}", label))
        _write_csv(os.path.join(inputs, f"{split}.csv"), rows)
        box_rows = []
        os.makedirs(os.path.join(inputs, "boxes", split), exist_ok=True)
        for i in range(count):
            scene = _random_crop(portrait, rng, 128)
            side = rng.randrange(32, 64)
            x, y = rng.randrange(128 - side), rng.randrange(128 - side)
            scene.paste(_random_crop(pack, rng, side), (x, y))
            name = f"boxes/{split}/{i:03d}.jpg"
            scene.save(os.path.join(inputs, name), quality=90)
            box_rows.append((f"{root}/inputs/{name}", "package", x, y, x + side, y + side))
        _write_csv(os.path.join(inputs, f"{split}_boxes.csv"), box_rows)
    with open(os.path.join(inputs, "labels.txt"), "w") as handle:
        handle.write("\n".join(CLASSES) + "\n")


def _write_csv(path: str, rows) -> None:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


class ImageRunner:
    """Runs the image's commands: through a container engine with `work` mounted at /smoke, or in this
    process's own container (--inside)."""

    def __init__(self, engine: str | None, image: str | None, work: str):
        self.engine, self.image, self.work = engine, image, work
        self.root = MOUNT if engine else work

    def run(self, args: list[str], entrypoint: str | None = None, env: dict | None = None, image: str | None = None,
            mounts: tuple = ()) -> subprocess.CompletedProcess:
        env = env or {}
        if self.engine:
            command = [self.engine, "run", "--rm", "--network=none", "-v", f"{self.work}:{MOUNT}"]
            for source, target in mounts:
                command += ["-v", f"{source}:{target}"]
            for key, value in env.items():
                command += ["-e", f"{key}={value}"]
            if entrypoint:
                command += ["--entrypoint", entrypoint]
            command += [image or self.image, *args]
            child_env = None
        else:
            command = [entrypoint or "python", *([] if entrypoint else ["/app/entrypoint.py"]), *args]
            child_env = {**os.environ, **env}
        started = time.time()
        result = subprocess.run(command, capture_output=True, text=True, cwd=None if self.engine else "/app",
                                env=child_env, timeout=900)
        result.seconds = time.time() - started
        return result


def _check(condition: bool, what: str, result: subprocess.CompletedProcess | None = None) -> None:
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        if result is not None:
            print(f"--- exit {result.returncode}; stdout:\n{result.stdout[-3000:]}\n--- stderr:\n{result.stderr[-5000:]}",
                  file=sys.stderr)
        sys.exit(1)


def _step(name: str, result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    _check(result.returncode == 0, f"{name} exited {result.returncode}", result)
    print(f"ok  {name:<38} {result.seconds:6.1f} s", flush=True)
    return result


def _metrics(path: str) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def smoke(container: ImageRunner, root_image: str | None) -> None:
    work, root = container.work, container.root
    help_ = _step("--help", container.run(["--help"]))
    _check("--training_data_path" in help_.stdout and "--model_type" in help_.stdout, "--help lists the flags", help_)
    if container.engine:
        who = _step("runs as the non-root user", container.run(["-u"], entrypoint="id"))
        _check(who.stdout.strip() == "1000", f"the image runs as uid 1000, not {who.stdout.strip()}", who)

    records = f"{root}/records"
    converted = _step("converter: classification CSV", container.run([
        "-m", "data.jpeg_to_tf_record", f"--train_csv={root}/inputs/train.csv",
        f"--validation_csv={root}/inputs/validation.csv", f"--labels_file={root}/inputs/labels.txt",
        f"--output_dir={records}/classification", "--runner=DirectRunner"], entrypoint="python"))
    summary = converted.stdout + converted.stderr
    _check("train: 64 of 64 images written" in summary and "validation: 24 of 24 images written" in summary,
           "the converter wrote every image", converted)
    names = sorted(os.listdir(os.path.join(work, "records", "classification")))
    _check(any(n.startswith("train-") for n in names) and any(n.startswith("validation-") for n in names),
           f"the converter wrote train-* and validation-* shards ({names})", converted)
    _step("converter: detection boxes CSV", container.run([
        "-m", "data.jpeg_to_tf_record", f"--train_boxes_csv={root}/inputs/train_boxes.csv",
        f"--validation_boxes_csv={root}/inputs/validation_boxes.csv", "--box_coordinates=pixels",
        f"--output_dir={records}/detection", "--runner=DirectRunner"], entrypoint="python"))

    job = f"{root}/jobs/classification"
    trained = _step("classification job", container.run([
        f"--training_data_path={records}/classification/train-*",
        f"--validation_data_path={records}/classification/validation-*", f"--job-dir={job}", "--num_classes=2",
        "--model_type=resnet-18", "--image_size=32", "--max_steps=20", "--train_steps_per_eval=10",
        "--train_batch_size=16", "--optimizer_type=adam", "--initial_learning_rate=0.002"],
        env={"CLOUD_ML_HP_METRIC_FILE": f"{root}/jobs/classification.metrics"}))
    job_on_host = os.path.join(work, "jobs", "classification")
    for path in ("model/saved_model.pb", "model/labels.txt", "report/report.html"):
        _check(os.path.exists(os.path.join(job_on_host, path)), f"the classification job wrote {path}", trained)
    reports = _metrics(os.path.join(work, "jobs", "classification.metrics"))
    _check([r["global_step"] for r in reports] == ["10", "20"] and all("top_1_accuracy" in r for r in reports),
           f"top_1_accuracy reported at steps 10 and 20 ({reports})", trained)

    predicted = _step("predict", container.run([
        "predict", f"--model_dir={job}/model", f"--input={root}/inputs/validation/package"]))
    lines = [json.loads(line) for line in predicted.stdout.splitlines() if line.startswith("{")]
    top = [line["predictions"][0]["name"] if line.get("predictions") else None for line in lines]
    _check(len(lines) == 12 and all(name in CLASSES for name in top),
           "predict printed a line with its top class name for each of the 12 images", predicted)
    print(f"    predict: {top.count('package')}/12 package photos called 'package' after 20 steps")

    # batch_predict on Beam (DirectRunner, the image's own workers): the same photos and a file that is no image.
    with open(os.path.join(work, "inputs", "validation", "package", "notes.txt"), "w") as handle:
        handle.write("not a photo\n")
    batch = _step("batch_predict", container.run([
        "batch_predict", f"--model_dir={job}/model", f"--input_paths={root}/inputs/validation/package/*",
        f"--output_path={root}/jobs/batch_predictions"]))
    out = os.path.join(work, "jobs", "batch_predictions")
    results = [json.loads(line) for name in sorted(os.listdir(out)) if name.startswith("prediction.results-")
               for line in open(os.path.join(out, name))]
    with open(os.path.join(out, "prediction.errors_stats-00000-of-00001")) as handle:
        counts = json.loads(handle.readline())
    _check(len(results) == 12 and all(r["predictions"][0]["name"] in CLASSES for r in results)
           and counts["errors_by_reason"] == {"not_an_image": 1},
           f"batch_predict wrote 12 results with class names and named the text file ({counts})", batch)

    _serve(container, f"{job}/model")

    detected = _step("detection job", container.run([
        f"--training_data_path={records}/detection/train-*", f"--validation_data_path={records}/detection/validation-*",
        f"--job-dir={root}/jobs/detection", "--num_classes=1", "--resnet_depth=18", "--image_size=128,128",
        "--train_batch_size=8", "--max_steps=4", "--train_steps_per_eval=4", "--optimizer_type=adam",
        "--initial_learning_rate=0.001"], env={"CLOUD_ML_HP_METRIC_FILE": f"{root}/jobs/detection.metrics"}))
    _check(os.path.exists(os.path.join(work, "jobs", "detection", "model", "saved_model.pb")),
           "the detection job exported its model", detected)
    _check(any("AP" in r for r in _metrics(os.path.join(work, "jobs", "detection.metrics"))),
           "the detection job reported AP", detected)

    _tune(container, records)
    if root_image:
        _sagemaker(container, root_image)


# Run where the server runs (in its container, on its loopback): waits for the health route, then one request of
# each kind; prints what came back as one JSON line.
SERVE_CLIENT = r"""
import base64, glob, json, sys, time, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
base, photos = "http://127.0.0.1:8080", sorted(glob.glob(sys.argv[1] + "/*.jpg"))[:2]
def call(path, body=None, content_type=None):
    request = urllib.request.Request(base + path, data=body, headers={"Content-Type": content_type} if body else {})
    try:
        with opener.open(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
deadline = time.time() + 300
while True:
    try:
        if call("/health")[0] == 200:
            break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(1)
images = [open(path, "rb").read() for path in photos]
instances = {"instances": [{"image_bytes": {"b64": base64.b64encode(i).decode()}, "key": str(n)} for n, i in enumerate(images)]}
print(json.dumps({
    "vertex_json": call("/predict", json.dumps(instances).encode(), "application/json"),
    "sagemaker_jpeg": call("/invocations", images[0], "image/jpeg"),
    "sagemaker_x_image": call("/invocations", images[1], "application/x-image"),
    "ping": call("/ping"),
    "not_an_image": call("/invocations", b"not a photo", "image/jpeg")}))
"""


def _serve(container: ImageRunner, model_dir: str) -> None:
    """`IMAGE serve` with Vertex AI's variables (its routes beside SageMaker's): one request of each kind from inside
    the container, then SIGTERM (`stop`): it must exit 0. --network=none: the loopback is all it needs."""
    env = {"AIP_HTTP_PORT": "8080", "AIP_HEALTH_ROUTE": "/health", "AIP_PREDICT_ROUTE": "/predict"}
    photos = f"{container.root}/inputs/validation/package"
    started = time.time()
    if container.engine:
        name = f"smoke-serve-{os.getpid()}"
        command = [container.engine, "run", "-d", "--name", name, "--network=none", "-v", f"{container.work}:{MOUNT}"]
        for key, value in env.items():
            command += ["-e", f"{key}={value}"]
        subprocess.run([*command, container.image, "serve", f"--model_dir={model_dir}"], check=True,
                       capture_output=True, text=True)
        try:
            answered = subprocess.run([container.engine, "exec", name, "python", "-c", SERVE_CLIENT, photos],
                                      capture_output=True, text=True, timeout=600)
            subprocess.run([container.engine, "stop", "--time=60", name], capture_output=True, timeout=120)
            exit_code = subprocess.run([container.engine, "inspect", "--format", "{{.State.ExitCode}}", name],
                                       capture_output=True, text=True).stdout.strip()
            log = subprocess.run([container.engine, "logs", name], capture_output=True, text=True)
            answered.stderr += f"\n--- server log:\n{log.stdout}{log.stderr}"
        finally:
            subprocess.run([container.engine, "rm", "--force", name], capture_output=True)
    else:
        server = subprocess.Popen(["python", "/app/entrypoint.py", "serve", f"--model_dir={model_dir}"], cwd="/app",
                                  env={**os.environ, **env})
        answered = subprocess.run(["python", "-c", SERVE_CLIENT, photos], capture_output=True, text=True, timeout=600)
        server.terminate()
        exit_code = str(server.wait(timeout=120))
    answered.seconds = time.time() - started
    _step("serve: Vertex and SageMaker requests", answered)
    got = json.loads(answered.stdout.strip().splitlines()[-1])
    vertex, jpeg, x_image = got["vertex_json"], got["sagemaker_jpeg"], got["sagemaker_x_image"]
    _check(vertex[0] == 200 and [p["key"] for p in vertex[1]["predictions"]] == ["0", "1"]
           and all(p["predictions"][0]["name"] in CLASSES for p in vertex[1]["predictions"])
           and jpeg[0] == 200 and jpeg[1]["predictions"][0]["predictions"][0]["name"] in CLASSES
           and x_image[0] == 200 and got["ping"][0] == 200 and got["not_an_image"][0] == 400,
           f"serve answered each request as documented ({answered.stdout.strip()[-800:]})", answered)
    _check(exit_code == "0", f"serve exited {exit_code} on SIGTERM, not 0", answered)


def _tune(container: ImageRunner, records: str) -> None:
    """`IMAGE tune`: a two-trial grid sweep on Optuna, its study in SQLite in the job dir."""
    root = container.root
    spec = {"trainingInput": {"hyperparameters": {
        "goal": "MAXIMIZE", "hyperparameterMetricTag": "top_1_accuracy", "maxTrials": 2, "maxParallelTrials": 2,
        "algorithm": "GRID_SEARCH", "params": [{"parameterName": "initial_learning_rate", "type": "DISCRETE",
                                                "discreteValues": [0.001, 0.003]}]}}}
    with open(os.path.join(container.work, "inputs", "sweep.json"), "w") as handle:
        json.dump(spec, handle)
    swept = _step("tune: 2 trials, 2 at once", container.run([
        "tune", f"--config={root}/inputs/sweep.json", f"--job-dir={root}/jobs/sweep", "--",
        f"--training_data_path={records}/classification/train-*",
        f"--validation_data_path={records}/classification/validation-*", "--num_classes=2", "--model_type=resnet-18",
        "--image_size=32", "--max_steps=10", "--train_steps_per_eval=10", "--train_batch_size=16"]))
    sweep = os.path.join(container.work, "jobs", "sweep")
    _check(swept.stdout.splitlines()[-1].startswith("best trial ")
           and sorted(os.listdir(os.path.join(sweep, "model"))) == ["trial_1", "trial_2"]
           and os.path.exists(os.path.join(sweep, "tuning", "trials.csv")),
           "the sweep named its best trial and wrote model/trial_1, model/trial_2 and tuning/trials.csv", swept)


def _sagemaker(container: ImageRunner, root_image: str) -> None:
    """SageMaker's invocation, `IMAGE train`, with /opt/ml as SageMaker mounts it: owned by root, 0755."""
    opt_ml = os.path.join(container.work, "opt_ml")
    config = os.path.join(opt_ml, "input", "config")
    os.makedirs(config)
    shutil.copytree(os.path.join(container.work, "inputs", "train"), os.path.join(opt_ml, "input", "data", "training"))
    hyperparameters = {"epochs": "1", "batch_size": "16", "model_type": '"resnet-18"', "image_size": "32",
                       "validation_split_ratio": "0.25"}
    for name, value in (("hyperparameters.json", hyperparameters),
                        ("inputdataconfig.json", {"training": {"TrainingInputMode": "File"}}),
                        ("resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})):
        with open(os.path.join(config, name), "w") as handle:
            json.dump(value, handle)
    for directory, _, files in os.walk(opt_ml):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)
    trained = _step("SageMaker: IMAGE train (as root)", container.run(
        ["train"], image=root_image, mounts=((opt_ml, "/opt/ml"),)))
    _check(os.path.exists(os.path.join(opt_ml, "model", "1", "saved_model.pb"))
           and os.path.exists(os.path.join(opt_ml, "model", "1", "labels.txt")),
           "the SageMaker job wrote model/1/saved_model.pb and model/1/labels.txt", trained)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="The image to test (with --engine).")
    parser.add_argument("--engine", default="podman", help="podman or docker.")
    parser.add_argument("--root_image", help="The same image built with --build-arg RUN_AS=0:0 (SageMaker step).")
    parser.add_argument("--inside", action="store_true", help="Run the steps here, inside the image.")
    parser.add_argument("--work_dir", help="Where inputs, records and jobs go (default: a new temp dir, removed "
                                           "when every step passed).")
    args = parser.parse_args()
    if not args.inside and not args.image:
        parser.error("--image is required unless --inside")
    work = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="image-smoke-"))
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)  # mkdtemp's 0700 would keep the image's user out
    container = ImageRunner(None if args.inside else args.engine, args.image, work)
    make_inputs(work, container.root)
    for name in ("records", "jobs"):
        os.makedirs(os.path.join(work, name), exist_ok=True)
        os.chmod(os.path.join(work, name), 0o777)  # the image's uid 1000 writes there
    started = time.time()
    smoke(container, None if args.inside else args.root_image)
    print(f"image smoke test passed in {time.time() - started:.0f} s")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
