# synthgate: `make run` starts the one-machine stack, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install lock run test test-fast lint format redis-server faketime chromium clean bench

# The locked dependency sets (docs/development.md, "Dependencies"): the dev/test venv's (the
# project editable with both extras, torch's CPU build), the gateway image's (no torch) and
# the GPU image's (PyPI's CUDA torch, Ubuntu 24.04's Python 3.12). `make lock` resolves them
# again from pyproject.toml and requirements/*.in; `make install` syncs .venv to the first.
DEV_LOCK := requirements/dev.txt
GATEWAY_LOCK := requirements/gateway.txt
GPU_LOCK := requirements/gpu-worker.txt
# uv reads no pip configuration: it gets pip's find-links, where torch's CPU build lies on
# the CI machines (elsewhere: UV_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_ENV := $(if $(strip $(FIND_LINKS)),UV_FIND_LINKS='$(strip $(FIND_LINKS))')
UV := $(UV_ENV) $(BIN)/uv
# The uv the dev lock names, bootstrapped into .venv with pip.
UV_PIN := $(shell grep -m1 -o '^uv==[^ ]*' $(DEV_LOCK))
# Options for uv pip compile, e.g. LOCK_ARGS=--upgrade or LOCK_ARGS='--upgrade-package fastapi'.
LOCK_ARGS ?=
COMPILE := $(UV) pip compile --quiet --generate-hashes --custom-compile-command 'make lock' $(LOCK_ARGS)

install: $(STAMP)

$(BIN)/uv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet '$(UV_PIN)'

# Exactly the dev lock: uv installs what it names and removes everything else.
$(STAMP): $(DEV_LOCK) pyproject.toml | $(BIN)/uv
	$(UV) pip sync --quiet --python $(BIN)/python $(DEV_LOCK)
	touch $@

lock: | $(BIN)/uv
	$(COMPILE) --universal --python-version 3.11 requirements/dev.in -o $(DEV_LOCK)
	$(COMPILE) --universal --python-version 3.11 pyproject.toml -o $(GATEWAY_LOCK)
	$(COMPILE) --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
	  --extra diffusers pyproject.toml requirements/gpu-worker.in -o $(GPU_LOCK)

# redis-server from Debian's packages when the binary is missing.
redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

# libfaketime (Debian's faketime package) for the test of workers whose clocks disagree
# (tests/e2e/test_clock_skew.py).
faketime:
	@command -v faketime >/dev/null || { \
	  echo "installing faketime (Debian package)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq faketime >/dev/null; }

# Headless Chromium and its driver from Debian's packages, for the console's browser tests
# (tests/e2e/test_console_*.py), when either binary is missing. Selenium is given their
# paths: no browser or driver is ever downloaded.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { \
	  echo "installing chromium and chromium-driver (Debian packages)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

run: install redis-server
	$(BIN)/synthgate run

# The suite's files spread over TEST_PROCESSES pytest processes (pytest-xdist; a file's tests
# stay in one process, with its module fixtures), handed out in collection order, the
# longest files first (tests/fixtures/ordering.py). Most of a test's time is waiting for the
# processes it drives: two take it from ~20 to ~14 min on 2 cores; TEST_PROCESSES=0: one.
TEST_PROCESSES ?= 2

test: install redis-server faketime chromium
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

# The unit level, under two minutes on 2 cores: no live stacks, no pipelines, no chart
# (markers: pyproject.toml, given by tests/conftest.py and the folder conftests).
test-fast: install redis-server
	$(BIN)/python -m pytest -m "not e2e and not slow and not deploy"

# The gateway benchmark (bench/README.md): every scenario, some five minutes on 2 cores;
# the table goes to bench/results/gateway.md. Options: make bench BENCH_ARGS='--smoke'.
bench: install redis-server
	$(BIN)/python bench/gateway_bench.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var *.egg-info
