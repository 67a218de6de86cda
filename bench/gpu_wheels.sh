#!/bin/sh
# Download the wheels bench/gpu.py needs on the GPU machine into build/wheels (git-ignored).
#
# That machine reaches no package registry. It has Python 3.12, torch, transformers,
# Pillow, numpy, safetensors, huggingface_hub and zipp, but not diffusers: this fetches
# diffusers at the version this checkout uses, and importlib_metadata (its one missing
# dependency; 8.x, which needs only zipp). Carry build/wheels and install with --no-deps.
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
version=$("$python" -c 'import diffusers; print(diffusers.__version__)')
rm -rf build/wheels
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
    -d build/wheels "diffusers==$version" "importlib_metadata==8.7.0"
ls -l build/wheels
