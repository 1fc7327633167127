"""`specc bench`: every contender timed from one spec, outputs checked before timing, the
table/JSON/plot it writes, and its refusals (one line, exit 2). Not timed: the figures are
only checked to be consistent with each other (speed targets live in benchmarks/)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import specc
from specc.cli import main
from specc.commands import bench_run
from specc_onnx import emit, random_weights, save

SPEC = """
name: tiny
input: {channels: 1, size: 8}
classes: 3
layers:
  - {type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {type: global_avg_pool}
  - {type: linear, units: 3}
"""
FAST = ["--batch", "1,4", "--rounds", "2", "--seconds", "0.005", "--threads", "1", "--no-compile"]


@pytest.fixture(autouse=True)
def _torch_threads():
    """bench sets torch's thread count for the process: give the next tests theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    (folder / "tiny.yaml").write_text(SPEC)
    graph = specc.load(SPEC)
    save(emit(graph, random_weights(graph, 0)), folder / "tiny.onnx")
    return folder


def test_spec_json_has_every_contender_with_consistent_figures(files, capsys):
    assert main(["bench", str(files / "tiny.yaml"), *FAST, "--quantize", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [c["contender"] for c in report["contenders"]]
    assert names == ["torch eager", "torch channels_last", "torch.compile", "onnxruntime fp32", "onnxruntime int8"]
    assert report["baseline"] == "torch eager" and report["threads"] == 1 and report["rounds"] == 2
    by_name = {c["contender"]: c for c in report["contenders"]}
    assert by_name["torch.compile"]["results"] == [] and by_name["torch.compile"]["note"] == "skipped: --no-compile"
    assert by_name["onnxruntime int8"]["note"].startswith("top-1 agreement")
    for name in ("torch eager", "torch channels_last", "onnxruntime fp32", "onnxruntime int8"):
        rows = by_name[name]["results"]
        assert [r["batch"] for r in rows] == [1, 4]
        for r in rows:
            assert 0 < r["median_ms"] <= r["p90_ms"]
            assert r["images_per_s"] == pytest.approx(r["batch"] / (r["median_ms"] / 1000))
    eager = {r["batch"]: r["median_ms"] for r in by_name["torch eager"]["results"]}
    for r in by_name["onnxruntime fp32"]["results"]:
        assert r["speedup"] == pytest.approx(eager[r["batch"]] / r["median_ms"])
    assert all(r["speedup"] == 1.0 for r in by_name["torch eager"]["results"])


def test_table_and_plot(files, tmp_path, capsys):
    plot = tmp_path / "bench.png"
    assert main(["bench", str(files / "tiny.yaml"), *FAST, "--plot", str(plot)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == "tiny: 1 thread, onnxruntime on CPUExecutionProvider, 2 interleaved rounds; ratios against torch eager"
    )
    assert lines[1].split() == ["contender", "batch", "median", "ms", "p90", "ms", "images/s", "speedup", "peak", "MiB"]
    assert lines[2].split()[:3] == ["torch", "eager", "1"] and lines[2].split()[-2] == "1.00x"
    assert "  torch.compile: skipped: --no-compile" in lines
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 400
    assert [p.name for p in tmp_path.iterdir()] == ["bench.png"]  # no temporary file left behind


def test_a_failing_torch_compile_is_skipped_with_its_reason(files, monkeypatch, capsys):
    import torch

    def broken(module):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    args = ["bench", str(files / "tiny.yaml"), *[a for a in FAST if a != "--no-compile"], "--json"]
    assert main(args) == 0
    by_name = {c["contender"]: c for c in json.loads(capsys.readouterr().out)["contenders"]}
    assert by_name["torch.compile"]["note"] == "skipped: torch.compile failed (RuntimeError: no C++ compiler found)"
    assert by_name["onnxruntime fp32"]["results"]


def test_a_contender_that_disagrees_is_dropped_before_timing():
    x = np.ones((2, 3), np.float32)
    setups = {
        "ref": lambda: lambda a: a * 2,
        "same": lambda: lambda a: a * 2 + 1e-6,
        "wrong": lambda: lambda a: a * 2 + 0.01,
    }
    contenders = bench_run.prepare(setups, x, int8=set())
    assert [c.run is not None for c in contenders] == [True, True, False]
    assert contenders[2].note == "dropped: its output differs from ref's by 1.00e-02"


PEAK_PROBE = """
import numpy as np
from specc.commands import bench_run

def setup():
    keep = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    return lambda a: keep[:1] + a

print(bench_run.peak_rss_mb(setup, np.zeros(1))[1])
"""


def test_peak_memory_counts_what_a_contender_allocates():
    # In a fresh process, as `specc bench` runs: a long test session's heap may hand the
    # array pages that are already resident, which no peak would see grow.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PEAK_PROBE], capture_output=True, text=True, check=True).stdout
    peak = float(out)
    assert 60 <= peak <= 80


def ort_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def test_compiled_model_is_timed_in_onnxruntime(files, capsys):
    assert (
        main(["bench", str(files / "tiny.onnx"), "--batch", "2", "--rounds", "2", "--seconds", "0.005", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert [c["contender"] for c in report["contenders"]] == ["onnxruntime fp32"]
    assert report["baseline"] == "onnxruntime fp32"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--provider", "cuda"], "--provider cuda: this onnxruntime has no CUDAExecutionProvider"),
        (["--weights", "x.pt"], "--weights: applies to a SPEC;"),
        (["--plot", "out.svg"], "--plot out.svg: expected a .png file name"),
    ],
)
def test_refusals_are_one_line(files, capsys, extra, message):
    if extra[1:] == ["cuda"] and "CUDAExecutionProvider" in ort_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    assert main(["bench", str(files / "tiny.onnx"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
