# syntax=docker/dockerfile:1
# The GPU worker image: `synthgate worker` with torch and diffusers on the CUDA runtime.
# Build from the repository root:
#   docker build -f deploy/gpu-worker.Dockerfile -t synthgate-gpu:0.1.0 .
# TORCH_VERSION matches the Makefile's pin, the version the test suite runs.

FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS build
ARG TORCH_VERSION=2.13.0
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The distribution's Python; the base image tag fixes the release, security updates move the versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
# torch first and pinned exactly: diffusers must not pull an unpinned build of its own.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md /src/
COPY taskcore /src/taskcore
COPY gateway /src/gateway
COPY workers /src/workers
COPY synthgate /src/synthgate
COPY simulator /src/simulator
RUN /opt/venv/bin/pip install "/src[diffusers]"

FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 synthgate \
    && useradd --system --uid 10001 --gid synthgate --create-home --home-dir /home/synthgate \
       --shell /usr/sbin/nologin synthgate
COPY --from=build /opt/venv /opt/venv
# Caches go under ~/.cache (a writable volume when the root filesystem is read-only).
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/synthgate \
    XDG_CACHE_HOME=/home/synthgate/.cache \
    HF_HOME=/home/synthgate/.cache/huggingface \
    TRITON_CACHE_DIR=/home/synthgate/.cache/triton \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SYNTHGATE_DEVICE=cuda \
    SYNTHGATE_WORKER_CONCURRENCY=1
WORKDIR /home/synthgate
USER 10001:10001
# A Celery worker serves no HTTP: Kubernetes watches the process, compose restarts it.
HEALTHCHECK NONE
ENTRYPOINT ["synthgate"]
CMD ["worker"]
