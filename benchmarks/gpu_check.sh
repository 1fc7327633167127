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
# GPU_CHECK_BUDGET=540 (seconds, the default): sections past it are cut, and the JSON is written
# after each section, so a device call cut at 600 s still brings back what was done.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# This checkout's specc, installed or not (and whatever other specc is installed): PYTHONPATH
# reaches every subprocess too (pytest, `python -m specc train`). No `pip install -e .`: it
# needs setuptools (absent from Python 3.12+ venvs) and fails on an "externally managed" Python.
export PYTHONPATH="$PWD:$PWD/backends${PYTHONPATH:+:$PYTHONPATH}"

# Beyond torch/numpy/onnx/onnxruntime/pyyaml/networkx/pillow, specc needs pydantic 2 and the
# tests pytest 8+. Missing ones come from .wheels/, offline, into a folder of their own (pip
# --target, or the wheels unpacked where there is no pip, as in a venv made by uv): nothing in
# the machine's Python changes, so a system Python or a read-only site-packages does not matter.
wanted=""
"$PYTHON" -c "import pydantic, sys; sys.exit(tuple(map(int, pydantic.VERSION.split('.')[:2])) < (2, 5))" \
    2>/dev/null || wanted="$wanted pydantic"
"$PYTHON" -c "import pytest, sys; sys.exit(int(pytest.__version__.split('.')[0]) < 8)" 2>/dev/null \
    || wanted="$wanted pytest"
if [ -n "$wanted" ]; then
    if [ ! -d .wheels ]; then
        echo "gpu_check: specc needs$wanted, not installed here, and there is no .wheels/ folder to install from" >&2
        exit 2
    fi
    site=$(mktemp -d "${TMPDIR:-/tmp}/specc-gpu-check.XXXXXX")
    echo "gpu_check: installing$wanted from .wheels/ into $site (offline)"
    if "$PYTHON" -m pip --version >/dev/null 2>&1; then
        # shellcheck disable=SC2086  # one word per package
        "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --find-links .wheels --target "$site" $wanted \
            || { echo "gpu_check: pip could not install$wanted from .wheels/ for $("$PYTHON" -V 2>&1)" >&2; exit 2; }
    else
        "$PYTHON" benchmarks/gpu_check.py --unpack-wheels .wheels "$site"
    fi
    export PYTHONPATH="$PYTHONPATH:$site"
fi
if ! "$PYTHON" -c "import specc.cli, specc_torch, specc_onnx, pydantic, pytest"; then
    echo "gpu_check: specc does not import with $("$PYTHON" -V 2>&1) (the error is above)" >&2
    exit 2
fi
exec "$PYTHON" benchmarks/gpu_check.py
