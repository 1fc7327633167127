"""benchmarks/gpu_check.sh runs end to end on a machine without CUDA (as CI is): every GPU
section says it was skipped and why, the CPU smoke runs of the benchmark code give figures,
and the table and the JSON agree."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from benchmarks.gpu_check import wheel_fits
from tests.conftest import ROOT

SECTIONS = ["CUDA tests", "training benchmark", "onnxruntime CUDA EP", "Fashion-MNIST to 90%"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine, run benchmarks/gpu_check.sh itself")
def test_the_gpu_check_runs_on_a_cpu_skipping_every_gpu_section(tmp_path):
    env = dict(os.environ, GPU_CHECK_QUICK="1", OUT=str(tmp_path), OMP_NUM_THREADS="1")
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout[result.stdout.index("GPU check — ") :].splitlines()
    assert table[0] == f"GPU check — no CUDA device: every GPU section skipped; torch {torch.__version__} (quick mode)"
    assert [line[:22].strip() for line in table[2:6]] == SECTIONS
    assert all(line[23:31].strip() == "skipped" for line in table[2:6])
    assert table[6] == f"written: {tmp_path / 'gpu_check.json'}"

    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["gpu"] is None and report["quick"] is True and list(report["sections"]) == SECTIONS
    sections = report["sections"]
    assert sections["CUDA tests"]["summary"].startswith("no CUDA device: ")
    assert sections["CUDA tests"]["counts"]["skipped"] >= 6 and "passed" not in sections["CUDA tests"]["counts"]
    bench = sections["training benchmark"]["figures"]
    assert bench["device"] == "cpu" and set(bench["images_per_s"]) == {
        "hand-fp32", "hand-bf16-cl", "specc-fp32", "specc-bf16-cl",
    }  # fmt: skip
    assert all(rate > 0 for rate in bench["images_per_s"].values())
    onnx = sections["onnxruntime CUDA EP"]
    assert onnx["summary"].startswith("no CUDA device; CPU smoke run only: CPUExecutionProvider")
    assert onnx["figures"]["max_abs_diff"] < 1e-4  # specc's ONNX agrees with torch on the same weights
    assert sections["Fashion-MNIST to 90%"] == {"status": "skipped", "summary": "quick mode", "seconds": 0.0}


def test_the_wheels_unpacked_without_pip_are_the_ones_that_fit_the_python_and_cpu():
    # gpu_check.sh on a Python without pip unpacks .wheels/ itself: pure-Python wheels always,
    # pydantic_core only for this CPython version (the folder holds one for 3.10 to 3.14).
    core = "pydantic_core-2.50.5-{0}-{0}-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
    assert wheel_fits(core.format("cp310"), (3, 10), "x86_64")
    assert wheel_fits(core.format("cp314"), (3, 14), "x86_64")
    assert not wheel_fits(core.format("cp311"), (3, 10), "x86_64")
    assert not wheel_fits(core.format("cp310"), (3, 11), "x86_64")
    assert not wheel_fits(core.format("cp311"), (3, 11), "aarch64")
    assert wheel_fits("pydantic-2.14.4-py3-none-any.whl", (3, 12), "aarch64")
    assert wheel_fits("tomli-2.5.0-py3-none-any.whl", (3, 10), "x86_64")
    assert not wheel_fits("colorama-0.4.6-py2-none-any.whl", (3, 11), "x86_64")
    assert not wheel_fits("pywin32-311-cp311-cp311-win_amd64.whl", (3, 11), "AMD64")
