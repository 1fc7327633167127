#!/usr/bin/env bash
# The GPU proof in one script (< 10 minutes on a CUDA machine): the tests marked `cuda`, the
# training benchmark on the GPU (hand-written PyTorch vs specc, fp32 / bf16 + channels_last /
# --compile, same weights, interleaved rounds), onnxruntime's CUDA execution provider vs torch
# on the GPU (parity and speed), and a Fashion-MNIST run to 90% with its time. Prints one
# table and writes gpu_check.json to $OUT (if set) or benchmarks/.
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine, from the repository root
#   GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh    # a CPU smoke run (CI: tests/test_gpu_check.py)
#
# A machine without internet: the wheels specc needs beyond torch/numpy/onnx/pyyaml/networkx
# come from a carried `.wheels/` folder (made on a machine with internet, see docs/training.md);
# Fashion-MNIST from `.data/fashion-mnist/` or /usr/share/datasets/fashion-mnist.
# Without CUDA every GPU section is skipped, saying so; the exit status is 1 if a section failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# specc importable? Else install what it needs (pydantic, pytest, and ruamel.yaml when
# pyproject.toml asks for it) from .wheels, offline, then specc itself in editable mode.
if ! "$PYTHON" -c "import specc.cli, pydantic, pytest" 2>/dev/null; then
    if [ ! -d .wheels ]; then
        echo "gpu_check: specc is not importable and there is no .wheels/ folder to install it from" >&2
        exit 2
    fi
    wanted=""
    "$PYTHON" -c "import pydantic" 2>/dev/null || wanted="$wanted pydantic"
    "$PYTHON" -c "import pytest" 2>/dev/null || wanted="$wanted pytest"
    if grep -q "ruamel" pyproject.toml && ! "$PYTHON" -c "import ruamel.yaml" 2>/dev/null; then
        wanted="$wanted ruamel.yaml"
    fi
    if [ -n "$wanted" ]; then
        # shellcheck disable=SC2086  # one word per package
        "$PYTHON" -m pip install -q --no-index --find-links .wheels $wanted
    fi
    if ! "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null; then
        echo "gpu_check: pip could not install specc in editable mode; using PYTHONPATH instead"
        export PYTHONPATH="$PWD:$PWD/backends${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
exec "$PYTHON" benchmarks/gpu_check.py
