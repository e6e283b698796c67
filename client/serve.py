"""`python entrypoint.py serve [--model_dir=DIR] [--port=8080]` (`IMAGE serve`): an exported model behind HTTP, as
Vertex AI endpoints, SageMaker endpoints and `docker run -p 8080:8080 IMAGE serve --model_dir=...` call it.

Where the model and the port come from: platforms/serving.py (the flags, else Vertex's AIP_* variables, else
SageMaker's /opt/ml/model, highest numbered version). A gs:// model is copied to local disk once, at start; the
model is loaded and called once before the port opens, so the first health check that answers 200 means ready.

Routes: GET /ping and POST /invocations always; Vertex's AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE when set;
GET /execution-parameters for SageMaker batch transform. A predict request is either
  application/json   {"instances": [{"image_bytes": {"b64": "..."}, "key": "..."}, ...], "parameters": {...}}
                     (also "encoded_image", Vertex's "content": "<base64>", or {"b64": ...} as the instance)
  image/jpeg, image/png, image/gif, image/bmp, application/x-image, application/octet-stream: one raw image
Parameters (JSON "parameters" or the query string): top_k (maxPredictions), min_score (confidenceThreshold);
a raw image's key is the query's `key`, a JSON instance's its "key", else its index.
The answer: {"predictions": [{"key", "predictions": [...]}, ...]}, one per instance, in order, with the fields of
`predict` and `batch_predict`: a classifier's top classes {"label" (1-based), "name", "score", "class"}, a
detector's boxes {"box" [ymin, xmin, ymax, xmax] in the image's pixels, "box_normalized", "label", "name",
"score"} with the "image_size" [height, width] they refer to.

Bad input is the client's: a 4xx with {"error": "one line"}, and the server goes on (400 not JSON / not an
instance / not an image / not decodable / too many pixels; 413 a body over --max_request_bytes; 415 another
Content-Type; 404, 405), and 503 past --max_connections. Requests that arrive together are served by one call of
the model (up to --max_batch_size images); an image the model cannot decode is then served alone, so the others
still succeed. SIGTERM (and Ctrl-C): the port closes, requests in flight are answered, then the process exits 0.
"""

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time

from absl import flags

from client.served_model import Failure, Instance, ServedModel, check_image
from core.errors import UserInputError, first_line

IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/gif", "image/bmp", "application/x-image",
                                 "application/octet-stream"})
# Vertex AI's public endpoints refuse larger requests; SageMaker's limit is 6 MB (SERVE_MAX_REQUEST_BYTES=6291456).
DEFAULT_MAX_REQUEST_BYTES = 1_572_864
# A body over the limit is still read (and dropped) up to this size, so that the client gets the 413 rather than a
# reset connection; beyond it the connection is closed.
MAX_DRAINED_BYTES = 64 * 2**20
IMAGE_FIELDS = ("image_bytes", "encoded_image", "content")  # classifier, detector, Vertex AutoML


def define_flags(fv: flags.FlagValues) -> None:
    from dataloaders.image_ops import DEFAULT_MAX_IMAGE_PIXELS

    flags.DEFINE_string("model_dir", None, "The exported model (local or gs://; a folder of numbered versions "
                        "serves the highest). Default: AIP_STORAGE_URI, else /opt/ml/model.", flag_values=fv)
    flags.DEFINE_integer("port", None, "Port. Default: AIP_HTTP_PORT, else SAGEMAKER_BIND_TO_PORT, else 8080.",
                         flag_values=fv)
    flags.DEFINE_string("host", "0.0.0.0", "Address to listen on.", flag_values=fv)
    flags.DEFINE_integer("max_batch_size", 32, "Most images per call of the model (requests that arrive together "
                         "share a call; one larger request is served whole).", flag_values=fv)
    flags.DEFINE_float("batch_wait_ms", 2.0, "How long a call waits for more requests to join it once the model is "
                       "free (0: only those already waiting).", flag_values=fv)
    flags.DEFINE_integer("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES, "Larger request bodies get 413 "
                         "(default: Vertex AI's 1.5 MB).", flag_values=fv)
    flags.DEFINE_integer("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "Images whose header names more pixels get "
                         "400 without being decoded (the exported model also refuses more than its training "
                         "limit).", flag_values=fv)
    flags.DEFINE_integer("top_k", 5, "Classes per image (classifiers), unless the request asks otherwise.",
                         flag_values=fv)
    flags.DEFINE_float("min_score", 0.0, "Lowest detection score answered (detectors), unless the request asks "
                       "otherwise.", flag_values=fv)
    flags.DEFINE_integer("max_connections", 512, "Open connections (and requests in flight) beyond this get 503 at "
                         "once: a flood fills no memory.", flag_values=fv)
    flags.DEFINE_float("graceful_shutdown_s", 30.0, "After SIGTERM, how long requests in flight may take.",
                       flag_values=fv)
    flags.DEFINE_bool("access_log", False, "Log every request.", flag_values=fv)


class BadRequest(Exception):
    """The client's fault: answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --- the model's folder ------------------------------------------------------------------------------------
def locate_model(source: str, named_by: str) -> str:
    """The SavedModel folder under `source`: itself, or its highest numbered version (TensorFlow Serving's and
    SageMaker's layout)."""
    import tensorflow as tf

    def holds_model(folder: str) -> bool:
        return tf.io.gfile.exists(f"{folder}/saved_model.pb")

    try:
        if holds_model(source):
            return source
        if not tf.io.gfile.isdir(source):
            raise UserInputError(f"{named_by}: {source} does not exist")
        versions = [name.rstrip("/") for name in tf.io.gfile.listdir(source)]
        versions = [name for name in versions if name.isdigit() and holds_model(f"{source}/{name}")]
    except tf.errors.OpError as error:
        raise UserInputError(f"{named_by}: cannot read {source}: {first_line(error)}") from None
    if versions:
        return f"{source}/{max(versions, key=int)}"
    hint = f"; the model of a job is its JOB_DIR/model ({source}/model?)" if tf.io.gfile.exists(
        f"{source}/model") else ""
    raise UserInputError(f"{named_by}: {source} holds no SavedModel: neither saved_model.pb nor numbered versions "
                         f"(1/, 2/, ...) holding one{hint}")


def copy_to_local(folder: str, scratch: str) -> str:
    """A remote (gs://) model folder copied under `scratch`; a local one as it is."""
    import tensorflow as tf

    if "://" not in folder:
        return folder
    target = os.path.join(scratch, "model")
    try:
        for directory, _, files in tf.io.gfile.walk(folder):
            relative = directory[len(folder):].strip("/")
            os.makedirs(os.path.join(target, relative), exist_ok=True)
            for name in files:
                tf.io.gfile.copy(f"{directory.rstrip('/')}/{name}", os.path.join(target, relative, name))
    except tf.errors.OpError as error:
        raise UserInputError(f"cannot copy the model from {folder}: {first_line(error)}") from None
    return target


# --- requests -> instances ---------------------------------------------------------------------------------
def _b64(value, where: str) -> bytes:
    if isinstance(value, dict) and set(value) == {"b64"}:
        value = value["b64"]
    if not isinstance(value, str):
        raise BadRequest(400, f"{where}: the image must be base64 text, or {{\"b64\": \"...\"}}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(400, f"{where}: the image is not base64: {first_line(error)}") from None


def instances_of_json(body: bytes) -> tuple[list, dict]:
    """[(key, encoded bytes)] and the parameters of a Vertex / AI Platform JSON request."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(400, f"the body is not JSON: {first_line(error)}") from None
    if not isinstance(request, dict) or not isinstance(request.get("instances"), list):
        raise BadRequest(400, 'the body must be {"instances": [{"image_bytes": {"b64": "..."}, "key": "..."}, ...]} '
                              "(or send one image as image/jpeg)")
    if not request["instances"]:
        raise BadRequest(400, "the request has no instances")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(400, '"parameters" must be a JSON object')
    images = []
    for index, instance in enumerate(request["instances"]):
        where = f"instance {index}"
        if isinstance(instance, dict) and "b64" in instance and not any(f in instance for f in IMAGE_FIELDS):
            image = {"b64": instance["b64"]}
        elif isinstance(instance, dict) and any(field in instance for field in IMAGE_FIELDS):
            image = instance[next(field for field in IMAGE_FIELDS if field in instance)]
        elif isinstance(instance, str):
            image = instance
        else:
            raise BadRequest(400, f'{where} has no image: give {{"image_bytes": {{"b64": "..."}}}}')
        key = instance.get("key", index) if isinstance(instance, dict) else index
        images.append((str(key), _b64(image, where)))
    return images, parameters


def options_of(parameters: dict, defaults: dict) -> dict:
    """The request's top_k / min_score (AutoML's maxPredictions / confidenceThreshold too), checked."""
    names = {"top_k": "top_k", "maxPredictions": "top_k", "min_score": "min_score",
             "confidenceThreshold": "min_score"}
    options = dict(defaults)
    for name, value in parameters.items():
        if name == "key":
            continue
        if name not in names:
            raise BadRequest(400, f"unknown parameter {name!r} (known: {', '.join(names)})")
        try:
            if names[name] == "top_k":
                options["top_k"] = int(value)
                if options["top_k"] < 1 or float(value) != options["top_k"]:
                    raise ValueError
            else:
                options["min_score"] = float(value)
                if not 0.0 <= options["min_score"] <= 1.0:
                    raise ValueError
        except (TypeError, ValueError):
            wanted = "a whole number of at least 1" if names[name] == "top_k" else "a number from 0 to 1"
            raise BadRequest(400, f"parameter {name}={value!r} must be {wanted}") from None
    return options


def refused(failures: list, count: int) -> BadRequest:
    """The 400 of a request whose instances (`count` of them) include these (index, Failure): the first one, named
    by its place and key."""
    index, failed = failures[0]
    where = f"instance {index} (key {failed.input!r})" if count > 1 else "the image"
    return BadRequest(400, f"{where}: {failed.error}")


def checked(images: list, max_pixels: int) -> list[Instance]:
    """Each image's header checked (format, pixels) before anything is decoded; the first bad one is the
    request's error."""
    results = [check_image(key, content, max_pixels) for key, content in images]
    failures = [(index, result) for index, result in enumerate(results) if isinstance(result, Failure)]
    if failures:
        raise refused(failures, len(images))
    return results


async def read_body(request, limit: int) -> bytes:
    """The body, or 413 once it passes `limit` bytes (read on and dropped up to MAX_DRAINED_BYTES first)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_DRAINED_BYTES:
        raise BadRequest(413, f"the body has {int(declared):,} bytes, more than the limit of {limit:,} "
                              "(--max_request_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > MAX_DRAINED_BYTES:
            break
    if size > limit:
        raise BadRequest(413, f"the body has {'more than ' if size > MAX_DRAINED_BYTES else ''}{size:,} bytes, more "
                              f"than the limit of {limit:,} (--max_request_bytes); send fewer or smaller images")
    return b"".join(chunks)


# --- batching ----------------------------------------------------------------------------------------------
class Batcher:
    """Serves the instances of concurrent requests with as few model calls as possible: while the model works
    on one call, the requests that arrive wait in a queue, and the next call takes them all (up to
    max_batch_size images; a single larger request is served whole). Calls run on one thread beside the event
    loop, so requests are read and answered while the model computes."""

    def __init__(self, model: ServedModel, max_batch_size: int, wait_s: float):
        self.model, self.max_batch_size, self.wait_s = model, max_batch_size, wait_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self.calls = self.images = 0
        self.held = None  # a request that did not fit the last call: first in the next one

    async def rows(self, instances: list[Instance]) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((instances, future))
        return await future

    async def _next_batch(self) -> list:
        loop = asyncio.get_running_loop()
        batch = [self.held or await self.queue.get()]
        self.held = None
        size = len(batch[0][0])
        deadline = loop.time() + self.wait_s
        while size < self.max_batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                if loop.time() >= deadline:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                except TimeoutError:
                    break
            if size + len(item[0]) > self.max_batch_size:
                self.held = item
                break
            batch.append(item)
            size += len(item[0])
        return batch

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            instances = [instance for item, _ in batch for instance in item]
            try:
                rows = await loop.run_in_executor(self.executor, self.model.call, [i.key for i in instances],
                                                  [i.content for i in instances])
            except Exception as error:  # noqa: BLE001 - not the input's fault: each request gets a 500
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.calls += 1
            self.images += len(instances)
            start = 0
            for item, future in batch:
                if not future.done():  # the client may have gone
                    future.set_result(rows[start:start + len(item)])
                start += len(item)


# --- the app -----------------------------------------------------------------------------------------------
def make_app(model: ServedModel, routes, settings: dict):
    """The Starlette app: health and predict routes (routes: ServingPlacement), answers as JSON."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    batcher = Batcher(model, settings["max_batch_size"], settings["batch_wait_ms"] / 1000.0)
    counts = {"requests": 0, "errors": 0}
    defaults = {"top_k": settings["top_k"], "min_score": settings["min_score"]}

    def error(status: int, message: str, close: bool = False):
        counts["errors"] += 1
        headers = {"Connection": "close"} if close else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def health(request):
        return JSONResponse({"status": "ready", "task": model.task.name, "classes": len(model.class_names or []),
                             "served": {**counts, "model_calls": batcher.calls, "images": batcher.images}})

    async def execution_parameters(request):
        return JSONResponse({"MaxConcurrentTransforms": settings["max_batch_size"], "BatchStrategy": "SINGLE_RECORD",
                             "MaxPayloadInMB": max(1, settings["max_request_bytes"] // 2**20)})

    async def predict(request):
        counts["requests"] += 1
        try:
            body = await read_body(request, settings["max_request_bytes"])
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            query = dict(request.query_params)
            if content_type in IMAGE_CONTENT_TYPES:
                images, parameters = [(query.get("key", "0"), body)], {}
            elif content_type in ("application/json", "text/json", "") or content_type.endswith("+json"):
                images, parameters = instances_of_json(body)
            else:
                raise BadRequest(415, f"Content-Type {content_type!r} is not served: send application/json "
                                      "instances or one image as image/jpeg, image/png or application/x-image")
            options = options_of({**query, **parameters}, defaults)
            instances = checked(images, settings["max_image_pixels"])
            rows = await batcher.rows(instances)
            answers = [model.result(instance, row, options) for instance, row in zip(instances, rows)]
            failures = [(index, answer) for index, answer in enumerate(answers) if isinstance(answer, Failure)]
            if failures:
                raise refused(failures, len(answers))
        except BadRequest as bad:
            return error(bad.status, str(bad), close=bad.status == 413)
        except Exception as failure:  # noqa: BLE001 - the server's fault, said in one line; it goes on serving
            print(f"ERROR: {type(failure).__name__}: {first_line(failure)}", file=sys.stderr)
            return error(500, f"the model failed: {type(failure).__name__}: {first_line(failure)}")
        return JSONResponse({"predictions": answers})

    async def http_error(request, exc):
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        batcher.executor.shutdown(wait=True)

    app_routes = ([Route(path, health, methods=["GET"]) for path in routes.health_routes]
                  + [Route(path, predict, methods=["POST"]) for path in routes.predict_routes]
                  + [Route("/execution-parameters", execution_parameters, methods=["GET"])])
    return Starlette(routes=app_routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


def warm_up(model: ServedModel) -> None:
    """One call before the port opens: TensorFlow's first call builds its kernels (seconds), not a client's."""
    from PIL import Image

    encoded = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(encoded, format="JPEG")
    row = model.call(["warm-up"], [encoded.getvalue()])[0]
    if isinstance(row, str):
        raise UserInputError(f"the model cannot serve a 32x32 JPEG: {row}")


def make_server(app, host: str, port: int, settings: dict):
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's graceful shutdown on SIGTERM/SIGINT, then a normal return (exit 0): uvicorn itself raises
        the signal again once shut down, and the process would end by it (143)."""

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=settings["access_log"],
                            timeout_graceful_shutdown=settings["graceful_shutdown_s"],
                            limit_concurrency=settings["max_connections"],
                            timeout_keep_alive=75,  # past load balancers' 60 s idle timeout: they close first
                            server_header=False)
    return Server(config)


def main(argv: list[str]) -> int:
    from platforms import serving

    fv = flags.FlagValues()
    define_flags(fv)
    if any(arg in ("-h", "--help", "--helpfull", "help") for arg in argv):
        print(__doc__)
        print(fv.get_help())
        return 0
    try:
        for name, text in serving.flag_defaults_from_environment(list(fv)).items():
            try:
                fv.set_default(name, text)
            except flags.Error as error:
                raise UserInputError(f"{serving.FLAG_VARIABLE_PREFIX}{name.upper()}={text}: {error}") from None
        fv(["serve", *argv])
        for name in ("max_batch_size", "max_request_bytes", "max_image_pixels", "top_k", "max_connections"):
            if fv[name].value < 1:
                raise UserInputError(f"--{name}={fv[name].value} must be at least 1")
        if not 0.0 <= fv.min_score <= 1.0:
            raise UserInputError(f"--min_score={fv.min_score} must be from 0 to 1")
        place = serving.placement(fv.model_dir, fv.port)
        settings = {name: fv[name].value for name in fv}
        with tempfile.TemporaryDirectory(prefix="serve-") as scratch:
            started = time.time()
            model_dir = locate_model(place.model_source, place.model_source_named_by)
            model = ServedModel(copy_to_local(model_dir, scratch))
            warm_up(model)
            print(f"serving {model.task.title} ({len(model.class_names or [])} class names) from {model_dir}, "
                  f"loaded in {time.time() - started:.1f} s, on port {place.port}: health GET "
                  f"{', '.join(place.health_routes)}; predict POST {', '.join(place.predict_routes)}",
                  file=sys.stderr)
            make_server(make_app(model, place, settings), fv.host, place.port, settings).run()
    except (flags.Error, UserInputError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    print("serve: stopped", file=sys.stderr)
    return 0
