#!/usr/bin/env bash
# Set up everything stochrelax needs on a fresh machine: a virtual environment in .venv,
# PyTorch (a CPU build where no NVIDIA GPU is present), the package with its dev extras,
# and Fashion-MNIST from the Debian package when apt-get is usable. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${STOCHRELAX_VENV:-.venv}
FMNIST_DIR=/usr/share/datasets/fashion-mnist

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found, installing the default (CUDA) PyTorch build"
        $PIP install --quiet "torch>=2.4,<3"
    elif $PIP install --quiet --no-index --no-deps "torch==2.13.0" >/dev/null 2>&1; then
        echo "setup: no GPU, installed the CPU PyTorch build found locally"
        $PIP install --quiet "torch==2.13.0"
    else
        echo "setup: no GPU, installing the CPU PyTorch build from the PyTorch CPU index"
        $PIP install --quiet "torch>=2.4,<3" --index-url https://download.pytorch.org/whl/cpu \
            --extra-index-url https://pypi.org/simple
    fi
fi

$PIP install --quiet -e ".[dev]"

if [ -z "${STOCHRELAX_DATA:-}" ] && [ ! -f "$FMNIST_DIR/t10k-labels-idx1-ubyte.gz" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "setup: installing Debian package dataset-fashion-mnist"
        apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
    elif command -v apt-get >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        echo "setup: installing Debian package dataset-fashion-mnist (sudo)"
        sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "setup: cannot install dataset-fashion-mnist; stochrelax will download Fashion-MNIST on first use"
    fi
fi
