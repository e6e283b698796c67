# Both README commands install what they need into .venv first (from requirements.txt, the one pin list).
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

.PHONY: venv demo demo-detection test bench lint image push cloud-build clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip check
	touch $@

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
TEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

bench: venv
	$(PY) bench/input_pipeline_bench.py
	$(PY) bench/detection_bench.py
	$(PY) bench/converter_bench.py
	$(PY) bench/transfer_bench.py

lint: venv
	$(VENV)/bin/hadolint Dockerfile

# PRETRAINED=efficientnet-b0,resnet-50 bakes those ImageNet backbones into the image (offline jobs).
PRETRAINED ?=
image:
	docker build --build-arg PRETRAINED=$(PRETRAINED) --tag $(IMAGE) .

push: image
	docker push $(IMAGE)

cloud-build:
	gcloud builds submit --config cloudbuild.yaml \
		--substitutions=_REGION=$(REGION),_REPOSITORY=$(REPOSITORY),_TAG=$(TAG),_PRETRAINED=$(PRETRAINED)

clean:
	rm -rf $(VENV) sample_data jobs .pytest_cache
