"""Requests/s and latency of `entrypoint.py serve` under a bounded load on localhost, against the in-process limit
(the exported `serving_default` called directly at the same batch sizes), for a classifier and a detector, in one
run. Target: 0 errors, and at 32 concurrent clients >= 0.7x the limit's images/s at batch 32.

The photos: --images distinct real JPEGs (320x240 and 640x480, cut from scikit-image's photos: the converter
bench's set, built once into --cache_dir). The models: batch_predict_bench's (a ResNet-18 classifier and a
ResNet-18 + FPN RetinaNet at --image_size, trained 2 steps through the real command line and exported).

Each side is its own process on this machine, one after the other:
- limit: `serving_default` in one process on batches of 1, 8 and 32 images whose bytes are in memory; TensorFlow on
  every core; only the calls are timed.
- serve: `entrypoint.py serve --model_dir=... --port=...` with its defaults (batches of up to 32, 2 ms wait), and
  this process as the clients: for each level (1, 8, 32 concurrent clients), --seconds of closed-loop load, each
  client on its own keep-alive connection POSTing one photo as image/jpeg, waiting for the answer, sending the next.
  Requests/s = images/s (one image per request); p50 / p99 of each request's round trip; errors = any answer other
  than 200 with the photo's predictions. The clients' own CPU time comes out of the same cores.

    python bench/serve_bench.py [--images=512 --image_size=128 --seconds=30 --clients=1,8,32 --kinds=classifier,detector]
    python bench/serve_bench.py --kinds=classifier --model_dir=JOB_DIR/model   (an exported model of yours)
"""

import argparse
import asyncio
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LIMIT_SCRIPT = """
import glob, json, sys, time
import tensorflow as tf
model_dir, pattern, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
serve = tf.saved_model.load(model_dir).signatures["serving_default"]
image_input = "image_bytes" if "image_bytes" in serve.structured_input_signature[1] else "encoded_image"
contents = [open(path, "rb").read() for path in sorted(glob.glob(pattern))]
result = {}
for batch_size in map(int, sys.argv[4].split(",")):
    batches = [tf.constant(contents[i:i + batch_size]) for i in range(0, len(contents) - batch_size + 1, batch_size)]
    keys = tf.constant([b""] * batch_size)
    serve(**{image_input: batches[0]}, key=keys)  # warmed before the clock
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for batch in batches:
            serve(**{image_input: batch}, key=keys)
            images += batch_size
            if time.perf_counter() - started >= seconds:
                break
    result[batch_size] = images / (time.perf_counter() - started)
print(json.dumps(result))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def client(port: int, photos: list, offset: int, stop_at: float, latencies: list, errors: list) -> None:
    """One closed-loop client on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    index = offset
    try:
        while time.perf_counter() < stop_at:
            body = photos[index % len(photos)]
            index += 1
            started = time.perf_counter()
            writer.write(b"POST /invocations HTTP/1.1\r\nHost: bench\r\nContent-Type: image/jpeg\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b" 200 " not in status_line or b'"predictions"' not in answer:
                errors.append(status_line.decode().strip() + " " + answer[:200].decode("utf-8", "replace"))
    finally:
        writer.close()


async def load(port: int, photos: list, clients: int, seconds: float) -> dict:
    latencies, errors = [], []
    # A short warm-up at this level first (connections opened, the server's batches at this size), then the clock.
    for duration in (min(3.0, seconds / 5), seconds):
        latencies.clear(), errors.clear()
        started = time.perf_counter()
        await asyncio.gather(*(client(port, photos, i * 7, started + duration, latencies, errors)
                               for i in range(clients)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"requests_per_s": len(latencies) / elapsed, "requests": len(latencies), "errors": len(errors),
            "first_error": errors[0] if errors else None, "p50_ms": 1000 * ordered[len(ordered) // 2],
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}


def serve_figures(model_dir: str, photos: list, levels: list, seconds: float, scratch: str, kind: str,
                  serve_args: list) -> list:
    port = free_port()
    log_path = os.path.join(scratch, f"serve-{kind}.log")
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, os.path.join(REPO, "entrypoint.py"), "serve",
                                   f"--model_dir={model_dir}", f"--port={port}", *serve_args], cwd=REPO, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.time() + 300
        while True:
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit(f"serve did not start:\n{open(log_path).read()[-3000:]}")
            try:
                opener.open(f"http://127.0.0.1:{port}/ping", timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)
        def served() -> dict:
            return json.loads(opener.open(f"http://127.0.0.1:{port}/ping", timeout=5).read())["served"]

        figures = []
        for clients in levels:
            before = served()
            figures.append(asyncio.run(load(port, photos, clients, seconds)))
            after = served()
            figures[-1]["mean_batch"] = ((after["images"] - before["images"])
                                         / max(1, after["model_calls"] - before["model_calls"]))
        return figures
    finally:
        server.terminate()
        server.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--kinds", default="classifier,detector")
    parser.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/converter_bench"))
    parser.add_argument("--serve_args", default="", help="more flags for serve (default: its defaults)")
    parser.add_argument("--model_dir", help="serve this exported model instead of training one (one kind)")
    args = parser.parse_args()

    import batch_predict_bench
    import converter_bench

    levels = [int(level) for level in args.clients.split(",")]
    csv_path = converter_bench.build_photo_set(os.path.join(args.cache_dir, f"photos-{args.images}"), args.images)
    pattern = os.path.join(os.path.dirname(csv_path), "*", "*.jpg")
    paths = sorted(glob.glob(pattern))
    photos = [open(path, "rb").read() for path in paths]
    print(f"{len(photos)} photos (320x240 and 640x480 JPEGs, {sum(map(len, photos)) / len(photos) / 1024:.0f} KB "
          f"on average); models at {args.image_size} px; {args.seconds:.0f} s per level; "
          f"{len(os.sched_getaffinity(0))} CPUs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve_bench-") as scratch:
        for kind in args.kinds.split(","):
            model_dir = args.model_dir or batch_predict_bench.train_model(
                kind, os.path.join(scratch, "data"), os.path.join(scratch, f"job-{kind}"), args.image_size)
            limit = subprocess.run([sys.executable, "-c", LIMIT_SCRIPT, model_dir, pattern,
                                    str(min(args.seconds, 20)), ",".join(map(str, levels))],
                                   capture_output=True, text=True, check=True, cwd=REPO)
            limit = {int(size): value for size, value in json.loads(limit.stdout.strip().splitlines()[-1]).items()}
            print(f"# {kind}: limit " + ", ".join(f"batch {size}: {value:.1f} images/s" for size, value in limit.items()),
                  flush=True)
            for clients, figures in zip(levels, serve_figures(model_dir, photos, levels, args.seconds, scratch, kind,
                                                          args.serve_args.split())):
                ratio = figures["requests_per_s"] / limit[clients]
                rows.append((kind, clients, figures, limit[clients], ratio))
                print(f"# {kind}, {clients} clients: {figures['requests_per_s']:.1f} requests/s "
                      f"({figures['requests']} in {args.seconds:.0f} s), p50 {figures['p50_ms']:.0f} ms, p99 "
                      f"{figures['p99_ms']:.0f} ms, {figures['errors']} errors, {figures['mean_batch']:.1f} images per model call; {ratio:.2f}x the limit at batch "
                      f"{clients} ({limit[clients]:.1f} images/s)"
                      + (f"; first error: {figures['first_error']}" if figures["errors"] else ""), flush=True)
    print("\n| model | clients | requests/s (= images/s) | p50 | p99 | errors | images per call | limit at that batch "
          "| ratio |\n|---|---|---|---|---|---|---|---|---|")
    for kind, clients, f, limit, ratio in rows:
        print(f"| {kind} | {clients} | {f['requests_per_s']:.1f} | {f['p50_ms']:.0f} ms | {f['p99_ms']:.0f} ms | "
              f"{f['errors']} | {f['mean_batch']:.1f} | {limit:.1f} images/s | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
