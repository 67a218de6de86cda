# syntax=docker/dockerfile:1
# The gateway and upstream-worker image: `synthgate serve` (the default) or `synthgate worker`.
# No torch and no diffusers: the packages are requirements/gateway.txt's, exactly (`make lock`).
# Build from the repository root:
#   docker build -f deploy/gateway.Dockerfile -t synthgate:0.1.0 .

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# The locked set first (a layer that changes only with the lock), every file checked against
# its hash; then the project alone, so that nothing unlocked comes in.
COPY requirements/gateway.txt /src/requirements/
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /src/requirements/gateway.txt
COPY pyproject.toml README.md /src/
COPY taskcore /src/taskcore
COPY gateway /src/gateway
COPY workers /src/workers
COPY synthgate /src/synthgate
COPY simulator /src/simulator
RUN /opt/venv/bin/pip install --no-deps /src \
    && /opt/venv/bin/pip check

FROM python:3.11.13-slim-bookworm
RUN groupadd --system --gid 10001 synthgate \
    && useradd --system --uid 10001 --gid synthgate --create-home --home-dir /home/synthgate \
       --shell /usr/sbin/nologin synthgate
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/synthgate \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SYNTHGATE_HOST=0.0.0.0 \
    SYNTHGATE_PORT=8000
WORKDIR /home/synthgate
USER 10001:10001
EXPOSE 8000
# For `serve`; a worker container overrides it (compose) or ignores it (Kubernetes probes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SYNTHGATE_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["synthgate"]
CMD ["serve"]
