# syntax=docker/dockerfile:1
# The GPU worker image: `synthgate worker` with torch and diffusers on the CUDA runtime.
# Build from the repository root:
#   docker build -f deploy/gpu-worker.Dockerfile -t synthgate-gpu:0.1.0 .
# The packages are requirements/gpu-worker.txt's, exactly (`make lock`): PyPI's CUDA build of
# the torch the test suite runs as a CPU build (requirements/*.in), resolved for Python 3.12.

FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The distribution's Python; the base image tag fixes the release, security updates move the versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
# The locked set first (torch and the CUDA libraries: a layer that changes only with the lock),
# every file checked against its hash; then the project alone, so that nothing unlocked comes in.
COPY requirements/gpu-worker.txt /src/requirements/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps -r /src/requirements/gpu-worker.txt
COPY pyproject.toml README.md /src/
COPY taskcore /src/taskcore
COPY gateway /src/gateway
COPY workers /src/workers
COPY synthgate /src/synthgate
COPY simulator /src/simulator
RUN /opt/venv/bin/pip install --no-deps /src \
    && /opt/venv/bin/pip check

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
# No image-level check: a worker's /livez and /readyz are on SYNTHGATE_WORKER_METRICS_PORT,
# which the image does not fix; the chart's probes and compose's healthcheck call them
# (docs/observability.md, "Worker probes").
HEALTHCHECK NONE
ENTRYPOINT ["synthgate"]
CMD ["worker"]
