# Both README commands install what they need into .venv first, from requirements/dev.lock (every package pinned
# with its hashes; `make lock` compiles it and the image's runtime locks from requirements/*.in).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DATA := sample_data/digits
DEMO_JOB := jobs/demo
DEMO_DETECTION_DATA := sample_data/digit_detection
DEMO_DETECTION_JOB := jobs/demo_detection

# Image name for `make image` / `make push` (Artifact Registry); `make cloud-build` builds it on Cloud Build.
PROJECT ?= $(shell gcloud config get-value project 2>/dev/null)
REGION ?= us-central1
REPOSITORY ?= ml-images
TAG ?= latest
IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPOSITORY)/image-algorithms:$(TAG)

.PHONY: venv lock demo demo-detection sample-data test test-services bench lint image image-cpu image-test image-test-build image-test-smoke push cloud-build clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(PY) -m pip check
	touch $@

# The .in files are the one source of truth; the locks pin every package (for Linux x86-64, Python 3.11) with
# its hashes. runtime.lock is compiled first and constrains the other two, so all three agree.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock"
lock: venv
	$(UV_COMPILE) requirements/runtime.in -o requirements/runtime.lock
	$(UV_COMPILE) requirements/runtime-and-cuda.in -c requirements/runtime.lock -o requirements/runtime-and-cuda.lock
	$(UV_COMPILE) requirements/dev.in -c requirements/runtime.lock -o requirements/dev.lock

# Builds a dataset of real handwritten-digit scans (bundled with scikit-learn), trains a ResNet-18 on it,
# exports the best SavedModel and prints where it is and its accuracy.
demo: venv
	$(PY) -m data.sample_data --output_dir=$(DEMO_DATA)
	rm -rf $(DEMO_JOB)
	$(PY) entrypoint.py --training_data_path=$(DEMO_DATA)/train-* --validation_data_path=$(DEMO_DATA)/validation-* \
		--job-dir=$(DEMO_JOB) --num_classes=10 --max_steps=300 --train_steps_per_eval=100 --log_every_steps=50 \
		--model_type=resnet-18 --image_size=32 --optimizer_type=adam --initial_learning_rate=0.002 --warmup_steps=10

# Digit scans pasted at known boxes on real photos; trains a small RetinaNet (ResNet-18 + FPN) at 128 px on the
# CPU in a few minutes and prints its COCO AP and model path.
demo-detection: venv
	$(PY) -m data.sample_data --dataset=digit_detection --output_dir=$(DEMO_DETECTION_DATA)
	rm -rf $(DEMO_DETECTION_JOB)
	$(PY) entrypoint.py --training_data_path=$(DEMO_DETECTION_DATA)/train-* \
		--validation_data_path=$(DEMO_DETECTION_DATA)/validation-* --job-dir=$(DEMO_DETECTION_JOB) --num_classes=3 \
		--max_steps=400 --train_steps_per_eval=200 --log_every_steps=50 --resnet_depth=18 --image_size=128,128 \
		--train_batch_size=8 --optimizer_type=adam --initial_learning_rate=0.001 --warmup_steps=20 \
		--learning_rate_decay_type=cosine --aug_scale_min=0.8 --aug_scale_max=1.2

# Whole test files per worker (--dist loadfile): a file's module fixtures (the GCS emulator, a finished job)
# are built once. Much of the suite waits on process start-up and storage, so two workers gain even on 2 cores.
# Files are handed out longest first (tests/conftest.py), not by their number of tests (xdist's default).
TEST_WORKERS ?= 2
# PostgreSQL for the shared-study tuning test (Debian's package; the test starts its own server on a free port).
test-services:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

test: venv test-services
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 tests

bench: venv
	$(PY) bench/input_pipeline_bench.py
	$(PY) bench/detection_bench.py
	$(PY) bench/converter_bench.py
	$(PY) bench/transfer_bench.py
	$(PY) bench/determinism_bench.py
	$(PY) bench/accuracy_bench.py
	$(PY) bench/batch_predict_bench.py
	$(PY) bench/serve_bench.py

lint: venv
	$(VENV)/bin/hadolint Dockerfile

# The demo's data needs scikit-learn (and scikit-image for detection), which the image does not carry: make it
# here, then mount it into the container (README, "Run the image").
sample-data: venv
	$(PY) -m data.sample_data --output_dir=$(DEMO_DATA)
	$(PY) -m data.sample_data --dataset=digit_detection --output_dir=$(DEMO_DETECTION_DATA)

# docker where it exists, else podman. PRETRAINED=efficientnet-b0,resnet-50 bakes those ImageNet backbones into
# the image (offline jobs); BASE_IMAGE swaps the base (any Debian-like image with Python 3.11 and venv).
ENGINE ?= $(shell command -v docker >/dev/null 2>&1 && echo docker || echo podman)
PRETRAINED ?=
BASE_IMAGE ?= python:3.11-slim-bookworm
# Behind a TLS-intercepting proxy, lend the build the host's CA bundle:
#   make image BUILD_FLAGS="-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"
BUILD_FLAGS ?=
BUILD = $(ENGINE) build $(BUILD_FLAGS) --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg PRETRAINED=$(PRETRAINED)
image:
	$(BUILD) --tag $(IMAGE) .

image-cpu:
	$(BUILD) --build-arg ACCELERATOR= --tag $(IMAGE)-cpu .

# The real CPU image, built with podman on a Debian base made here (no registry needed), then run as a user
# runs it: container/smoke.py (converter, classification, predict, detection, tune, SageMaker `train` as root).
# Prints the image's size and each layer's. Two halves: CI builds while the tests run (.ci/run) and runs the
# smoke test after them.
TEST_IMAGE := localhost/open-image-algorithms:cpu-test
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
export CONTAINERS_CONF ?= $(CURDIR)/container/containers.conf
TEST_BUILD = podman build -v $(CA_BUNDLE):/etc/ssl/certs/ca-certificates.crt:ro --build-arg BASE_IMAGE=localhost/pybase \
	--build-arg ACCELERATOR=
image-test: image-test-build image-test-smoke

image-test-build:
	bash container/install_podman.sh
	bash container/base_image.sh localhost/pybase
	$(TEST_BUILD) --tag $(TEST_IMAGE) .
	$(TEST_BUILD) --build-arg RUN_AS=0:0 --tag $(TEST_IMAGE)-root .
	podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' $(TEST_IMAGE)
	podman history --format '{{.Size}}\t{{.CreatedBy}}' $(TEST_IMAGE) | cut -c1-150

image-test-smoke: venv
	$(PY) container/smoke.py --engine=podman --image=$(TEST_IMAGE) --root_image=$(TEST_IMAGE)-root
	podman image prune --force >/dev/null

push: image
	$(ENGINE) push $(IMAGE)

cloud-build:
	gcloud builds submit --config cloudbuild.yaml \
		--substitutions=_REGION=$(REGION),_REPOSITORY=$(REPOSITORY),_TAG=$(TAG),_PRETRAINED=$(PRETRAINED)

clean:
	rm -rf $(VENV) sample_data jobs .pytest_cache
