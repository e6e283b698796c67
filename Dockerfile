# Training image for AI Platform Training / Vertex AI custom jobs and `docker run --gpus all`.
# CUDA comes as pip wheels (tensorflow[and-cuda]), so a slim Python base serves CPU and GPU hosts alike;
# GPU hosts provide the driver through the NVIDIA container toolkit.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app

# The same pinned requirements.txt that the Makefile and CI install, plus TensorFlow's CUDA wheels.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt "tensorflow[and-cuda]==2.21.0" \
    && pip check

COPY entrypoint.py ./
COPY core/ core/
COPY dataloaders/ dataloaders/
COPY data/ data/
COPY export/ export/
COPY client/ client/
COPY algorithms/ algorithms/

# Non-root: AI Platform, Vertex AI and local Docker all run it this way; hypertune writes under /tmp.
# RUN_AS=0:0 runs it as root, for SageMaker accounts whose /opt/ml mounts only root may write.
ARG RUN_AS=1000:1000
RUN useradd --create-home --uid 1000 --user-group trainer
USER ${RUN_AS}

# Optional ImageNet backbones baked in (as the trainer user's Keras / KerasHub caches) for jobs that run in
# network isolation: make image PRETRAINED=efficientnet-b0,resnet-50. Empty: nothing is downloaded.
ARG PRETRAINED=""
RUN if [ -n "$PRETRAINED" ]; then python -m algorithms.classification.pretrained --download "$PRETRAINED"; fi

ENTRYPOINT ["python", "/app/entrypoint.py"]
