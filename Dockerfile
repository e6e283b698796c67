# Training image for AI Platform Training / Vertex AI custom jobs, SageMaker (`IMAGE train`) and
# `docker run --gpus all`; the same image serves the models it trains (`IMAGE serve`: Vertex AI and SageMaker
# endpoints, `docker run -p 8080:8080`). CUDA comes as pip wheels (tensorflow[and-cuda]), so a slim Python
# base serves CPU and GPU hosts alike; GPU hosts provide the driver through the NVIDIA container toolkit.
#   make image       GPU-capable image (ACCELERATOR=and-cuda)
#   make image-cpu   CPU-only image (ACCELERATOR=), 40% of the size
# BASE_IMAGE: any Debian-like image with Python 3.11, python3-venv and useradd (make image-test builds on one
# made locally with mmdebstrap, for hosts that reach no container registry).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Dependencies in their own stage: the lock files alone decide it, so a code change reuses it from the cache,
# and pip, its caches and TensorFlow's C++ headers (custom-op builds only) stay out of the final image.
FROM ${BASE_IMAGE} AS dependencies
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
ARG ACCELERATOR=and-cuda
COPY requirements/runtime.lock requirements/runtime-and-cuda.lock /tmp/requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes \
       -r "/tmp/requirements/runtime${ACCELERATOR:+-$ACCELERATOR}.lock" \
    && /opt/venv/bin/pip check \
    && rm -rf /opt/venv/lib/python3.11/site-packages/tensorflow/include

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2
COPY --from=dependencies /opt/venv /opt/venv

# Non-root: AI Platform, Vertex AI and local Docker all run it this way; hypertune writes under /tmp.
# RUN_AS=0:0 runs it as root, for SageMaker accounts whose /opt/ml mounts only root may write.
ARG RUN_AS=1000:1000
RUN useradd --create-home --uid 1000 --user-group trainer

WORKDIR /app
COPY entrypoint.py ./
COPY core/ core/
COPY dataloaders/ dataloaders/
COPY data/ data/
COPY export/ export/
COPY client/ client/
COPY tuning/ tuning/
COPY algorithms/ algorithms/
COPY platforms/ platforms/
# What Dataflow workers are given (converter and batch_predict with --runner=DataflowRunner): this code as a
# package, with the pins its requirements come from.
COPY setup.py MANIFEST.in ./
COPY requirements/runtime.in requirements/
USER ${RUN_AS}

# Optional ImageNet backbones baked in (as the trainer user's Keras / KerasHub caches) for jobs that run in
# network isolation: make image PRETRAINED=efficientnet-b0,resnet-50. Empty: nothing is downloaded.
ARG PRETRAINED=""
RUN if [ -n "$PRETRAINED" ]; then python -m algorithms.classification.pretrained --download "$PRETRAINED"; fi

# `serve`'s default port (Vertex AI's AIP_HTTP_PORT and SageMaker's are 8080 too).
EXPOSE 8080
ENTRYPOINT ["python", "/app/entrypoint.py"]
