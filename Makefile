# synthgate: `make run` starts the one-machine stack, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test test-fast lint format redis-server faketime chromium clean bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned exactly: an unpinned torch, or diffusers pulling one in,
	# downloads gigabytes of CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[diffusers,dev]'
	touch $@

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

test: install redis-server faketime chromium
	$(BIN)/python -m pytest

# The unit level, about a minute on 2 cores: no live stacks, no pipelines, no chart
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
