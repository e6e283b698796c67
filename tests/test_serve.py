"""`entrypoint.py serve`: the trained classifier (conftest's trained_job) behind HTTP, started as SageMaker starts it
(no arguments: /opt/ml/model, its port variable, SERVE_* settings), attacked with every kind of bad input while good
requests run beside them, and stopped with SIGTERM while requests are in flight. Vertex AI's contract (AIP_*,
a gs:// model) is in test_gcs.py; the detector on both platforms in test_detection_end_to_end.py."""

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import REPO, free_port

PLATFORM_VARIABLES = ("AIP_STORAGE_URI", "AIP_HTTP_PORT", "AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE",
                      "SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_BASE_DIR")


# Straight to 127.0.0.1, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url: str, body: bytes | None = None, content_type: str | None = None, timeout: float = 120):
    """(status, parsed JSON body) of one request; a POST when there is a body."""
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": content_type} if content_type else {})
    try:
        with DIRECT.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        assert b"\n" not in text.strip(), f"an error is one line: {text!r}"
        return error.code, json.loads(text)


@contextlib.contextmanager
def running_server(args, env_extra: dict, health_url: str, log_path):
    """`entrypoint.py serve ARGS` in its own process, with the platform variables of this test only; yields the
    process once `health_url` answers 200, and stops it at the end."""
    env = {name: value for name, value in os.environ.items() if name not in PLATFORM_VARIABLES}
    env.update(env_extra)
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, os.path.join(REPO, "entrypoint.py"), "serve", *args], cwd=REPO,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while True:
            assert process.poll() is None, f"serve exited {process.returncode}:\n{open(log_path).read()[-3000:]}"
            assert time.time() < deadline, f"serve not ready:\n{open(log_path).read()[-3000:]}"
            try:
                if call(health_url, timeout=5)[0] == 200:
                    break
            except OSError:
                time.sleep(0.3)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def png_of_size(width: int, height: int) -> bytes:
    """A valid PNG header of any size with almost no data: a decompression bomb when large (80 bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def digit_images(digits):
    """Six real digit scans of the validation set, as RGB images of several sizes."""
    record_path = sorted(tf.io.gfile.glob(digits["validation"]))[0]
    images = []
    for index, record in enumerate(tf.data.TFRecordDataset(record_path).take(6)):
        encoded = tf.train.Example.FromString(record.numpy()).features.feature["image/encoded"].bytes_list.value[0]
        images.append(Image.open(io.BytesIO(encoded)).convert("RGB").resize((32 + 8 * index, 40)))
    return images


def test_sagemaker_starts_serve_bare_and_gets_the_highest_version_on_ping_and_invocations(trained_job, digit_images,
                                                                                          tmp_path):
    from client.served_model import ServedModel

    # SageMaker unpacks model.tar.gz into /opt/ml/model: our training's layout there is model/1/; a later version
    # is served, compared as numbers (10 after 9), and the broken version 9 is never loaded.
    root = tmp_path / "ml"
    shutil.copytree(trained_job["model_dir"], root / "model" / "10")
    (root / "model" / "9").mkdir()
    (root / "model" / "9" / "saved_model.pb").write_bytes(b"not a model")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"SAGEMAKER_BASE_DIR": str(root), "SAGEMAKER_BIND_TO_PORT": str(port), "SERVE_TOP_K": "3",
           "SERVE_MAX_CONNECTIONS": "4"}
    with running_server([], env, f"{base}/ping", tmp_path / "serve.log"):
        status, health = call(f"{base}/ping")
        assert status == 200 and health["task"] == "classification" and health["classes"] == 10

        model = ServedModel(trained_job["model_dir"])
        jpeg, png = encode(digit_images[0], "JPEG"), encode(digit_images[1], "PNG")
        direct = model.call(["a", "b"], [jpeg, png])
        expected = [model.format(row, {"top_k": 3}) for row in direct]

        # Raw bodies, as SageMaker's own image algorithms take them; SERVE_TOP_K set the default of 3 classes.
        status, answer = call(f"{base}/invocations", jpeg, "image/jpeg")
        assert status == 200 and answer["predictions"][0]["key"] == "0"
        got = answer["predictions"][0]["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in expected[0]] and len(got) == 3
        assert got[0]["score"] == pytest.approx(expected[0][0]["score"], abs=1e-5)
        assert got[0]["name"] == model.class_names[got[0]["class"]]
        status, answer = call(f"{base}/invocations?key=scan-b&top_k=1", png, "application/x-image")
        assert status == 200 and answer["predictions"][0]["key"] == "scan-b"
        assert [p["label"] for p in answer["predictions"][0]["predictions"]] == [expected[1][0]["label"]]

        # JSON instances, AI Platform's form and Vertex AutoML's, with their keys and parameters, in order.
        body = {"instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}, "key": "second"},
                              {"content": base64.b64encode(jpeg).decode()}],
                "parameters": {"maxPredictions": 2}}
        status, answer = call(f"{base}/invocations", json.dumps(body).encode(), "application/json")
        assert status == 200
        assert [line["key"] for line in answer["predictions"]] == ["second", "1"]
        assert [p["label"] for p in answer["predictions"][0]["predictions"]] == [p["label"] for p in expected[1][:2]]
        assert [p["label"] for p in answer["predictions"][1]["predictions"]] == [p["label"] for p in expected[0][:2]]

        status, parameters = call(f"{base}/execution-parameters")
        assert status == 200 and parameters["BatchStrategy"] == "SINGLE_RECORD"

        # SERVE_MAX_CONNECTIONS=4: a fifth connection is turned away at once, and served again once they close.
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as refused:
            DIRECT.open(f"{base}/ping", timeout=30)
        assert refused.value.code == 503
        for connection in idle:
            connection.close()
        time.sleep(0.5)
        assert call(f"{base}/ping")[0] == 200
    assert "from " + str(root / "model" / "10") in (tmp_path / "serve.log").read_text()


def test_every_bad_input_gets_its_4xx_while_good_requests_beside_it_succeed(trained_job, digit_images, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # A long batch wait: the requests sent together below share model calls, bad and good in the same call.
    args = [f"--model_dir={trained_job['model_dir']}", f"--port={port}", "--max_request_bytes=200000",
            "--max_image_pixels=1000000", "--batch_wait_ms=300"]
    good = [encode(image, "JPEG") for image in digit_images]
    whole = good[0]
    cut = whole[:whole.index(b"\xff\xda") + 40]  # a whole header, the data cut short: only the model finds out
    b64 = base64.b64encode(good[1]).decode()
    bad = {
        "malformed JSON": (b'{"instances": [', "application/json", 400, "not JSON"),
        "no instances": (b'{"images": []}', "application/json", 400, '{"instances"'),
        "not base64": (json.dumps({"instances": [{"image_bytes": {"b64": "@@@"}}]}).encode(), "application/json", 400,
                       "not base64"),
        "a bad instance among good ones": (
            json.dumps({"instances": [{"image_bytes": {"b64": b64}}, {"image_bytes": {"b64": "aGVsbG8="}}]}).encode(),
            "application/json", 400, "instance 1 (key '1'): not an image"),
        "a text file": (b"just some text\n", "image/jpeg", 400, "not an image"),
        "a cut JPEG": (cut, "image/jpeg", 400, "not a decodable image"),
        "a 40,000 x 40,000 PNG bomb": (png_of_size(40000, 40000), "image/png", 400, "too many pixels"),
        "over --max_image_pixels": (png_of_size(2000, 1000), "image/png", 400, "more than --max_image_pixels=1,000,000"),
        "a TIFF": (encode(digit_images[2], "TIFF"), "image/tiff", 415, "Content-Type 'image/tiff' is not served"),
        "a TIFF sent as an image": (encode(digit_images[2], "TIFF"), "application/x-image", 400, "convert it to JPEG"),
        "a body over the limit": (b"\xff\xd8" + os.urandom(300_000), "image/jpeg", 413, "more than the limit of 200,000"),
        "a bad parameter": (json.dumps({"instances": [{"b64": b64}], "parameters": {"top_k": 0}}).encode(),
                            "application/json", 400, "top_k=0 must be"),
        "an unknown parameter": (json.dumps({"instances": [{"b64": b64}], "parameters": {"topk": 2}}).encode(),
                                 "application/json", 400, "unknown parameter 'topk'"),
    }
    with running_server(args, {}, f"{base}/ping", tmp_path / "serve.log") as process:
        results, threads = {}, []

        def send(name, body, content_type):
            results[name] = call(f"{base}/invocations", body, content_type)

        for round_ in range(2):  # each bad request has a good one beside it, twice
            for index, (name, (body, content_type, _, _)) in enumerate(bad.items()):
                threads.append(threading.Thread(target=send, args=(name, body, content_type)))
                threads.append(threading.Thread(target=send, args=(f"good {round_} {index}",
                                                                    good[index % len(good)], "image/jpeg")))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        for name, (_, _, status, message) in bad.items():
            assert results[name][0] == status, (name, results[name])
            assert message in results[name][1]["error"], (name, results[name])
        goods = {name: answer for name, answer in results.items() if name.startswith("good")}
        assert len(goods) == 2 * len(bad) and all(status == 200 for status, _ in goods.values()), goods
        assert all(len(answer["predictions"][0]["predictions"]) == 5 for _, answer in goods.values())

        assert call(f"{base}/invocations")[0] == 405 and call(f"{base}/predict", b"x", "image/jpeg")[0] == 404
        status, health = call(f"{base}/ping")
        assert status == 200 and process.poll() is None, "the server goes on"
        served = health["served"]
        # Every good image and the cut JPEG reached the model, in fewer calls than images: requests were batched.
        assert served["images"] >= len(goods) + 1 and served["model_calls"] < served["images"], served
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_a_request_that_does_not_fit_the_call_leads_the_next_one(trained_job, digit_images):
    """The batcher, in process on the real model (its calls recorded): requests of 20, 20 and 5 images with a batch
    of 32 are served as [20] then [20 + 5], in their order of arrival, each answered with its own rows."""
    import asyncio

    from client.serve import Batcher
    from client.served_model import ServedModel, check_image

    model = ServedModel(trained_job["model_dir"])
    calls, real_call = [], model.call
    model.call = lambda keys, contents: calls.append([key[0] for key in keys]) or real_call(keys, contents)
    jpeg = encode(digit_images[0], "JPEG")

    async def three_requests():
        batcher = Batcher(model, max_batch_size=32, wait_s=0.05)
        serving = asyncio.create_task(batcher.run())
        answers = await asyncio.gather(*(batcher.rows([check_image(f"{name}{i}", jpeg) for i in range(size)])
                                         for name, size in (("a", 20), ("b", 20), ("c", 5))))
        serving.cancel()
        batcher.executor.shutdown(wait=True)
        return answers

    answers = asyncio.run(three_requests())
    assert calls == [["a"] * 20, ["b"] * 20 + ["c"] * 5]
    assert [len(rows) for rows in answers] == [20, 20, 5]
    assert all(not isinstance(row, str) for rows in answers for row in rows)


def test_sigterm_answers_the_requests_in_flight_then_exits_0(trained_job, digit_images, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The model waits 3 s for more requests before each call: SIGTERM lands while these are in flight.
    args = [f"--model_dir={trained_job['model_dir']}", f"--port={port}", "--batch_wait_ms=3000",
            "--max_batch_size=64"]
    jpeg = encode(digit_images[3], "JPEG")
    with running_server(args, {}, f"{base}/ping", tmp_path / "serve.log") as process:
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(
            call(f"{base}/invocations?key=in-flight-{i}", jpeg, "image/jpeg"))) for i in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.time() + 60
        while call(f"{base}/ping")[1]["served"]["requests"] < 6:  # all six are being served
            assert time.time() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # the port is closed to new requests at once
            call(f"{base}/ping", timeout=5)
        for thread in threads:
            thread.join(timeout=60)
        assert process.wait(timeout=60) == 0
    assert sorted(answer["predictions"][0]["key"] for status, answer in results if status == 200) == [
        f"in-flight-{i}" for i in range(6)]
    log = (tmp_path / "serve.log").read_text()
    assert "serve: stopped" in log and "Traceback" not in log


def test_a_folder_without_a_model_stops_in_one_line_naming_what_named_it(tmp_path, monkeypatch, capsys):
    from client import serve

    (tmp_path / "job" / "model").mkdir(parents=True)
    for args, env, message in (([f"--model_dir={tmp_path / 'job'}"], {}, f"({tmp_path / 'job'}/model?)"),
                               ([], {"AIP_STORAGE_URI": str(tmp_path / "gone")}, "AIP_STORAGE_URI: "),
                               ([], {"SAGEMAKER_BASE_DIR": str(tmp_path)}, "SageMaker's model folder"),
                               ([f"--model_dir={tmp_path}"], {"SERVE_TOP_K": "many"}, "SERVE_TOP_K=many")):
        for name in PLATFORM_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert serve.main(args) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1 and message in errors[0], errors
        monkeypatch.delenv("SERVE_TOP_K", raising=False)
