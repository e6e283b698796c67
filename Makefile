# Both README commands install what they need into .venv first (from requirements.txt, the one pin list).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DATA := sample_data/digits
DEMO_JOB := jobs/demo

# Image name for `make image` / `make push` (Artifact Registry); `make cloud-build` builds it on Cloud Build.
PROJECT ?= $(shell gcloud config get-value project 2>/dev/null)
REGION ?= us-central1
REPOSITORY ?= ml-images
TAG ?= latest
IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPOSITORY)/image-algorithms:$(TAG)

.PHONY: venv demo test bench lint image push cloud-build clean

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

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) bench/input_pipeline_bench.py

lint: venv
	$(VENV)/bin/hadolint Dockerfile

image:
	docker build --tag $(IMAGE) .

push: image
	docker push $(IMAGE)

cloud-build:
	gcloud builds submit --config cloudbuild.yaml \
		--substitutions=_REGION=$(REGION),_REPOSITORY=$(REPOSITORY),_TAG=$(TAG)

clean:
	rm -rf $(VENV) sample_data jobs .pytest_cache
