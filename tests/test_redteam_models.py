"""Compiled models given to the wrong command: `specc quantize` on an fp16 or an explanation
model, `specc bench SPEC --int8` with another network's int8 model. Each was an internal error
(onnxruntime's type error, an index error, a broadcast error); now one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest

from specc.cli import main
from tests.redteam_helpers import refusal

SPEC = """name: tiny
input: {channels: 3, size: 8}
classes: %d
layers:
  - {type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {type: global_avg_pool}
  - {type: flatten}
  - {type: linear, units: %d}
"""


@pytest.fixture
def tiny(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC % (2, 2))
    data = tmp_path / "npy"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        np.save(data / f"{split}_images.npy", rng.integers(0, 255, (8, 3, 8, 8), dtype=np.uint8))
        np.save(data / f"{split}_labels.npy", np.arange(8) % 2)
    return spec, data


def test_quantize_an_fp16_model(tiny, tmp_path, capsys):
    spec, data = tiny
    assert main(["compile", str(spec), "-o", str(tmp_path / "b"), "--precision", "fp16", "--io", "fp16"]) == 0
    capsys.readouterr()
    model = tmp_path / "b" / "tiny.fp16.onnx"
    line = refusal(
        ["quantize", str(model), "--data", "npy", "--data-dir", str(data), "-o", str(tmp_path / "q.onnx")], capsys
    )
    assert line == f"error: {model}: an fp16 model (--precision fp16) — quantize the fp32 model (compile without it)"
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_an_explanation_model(tiny, tmp_path, capsys):
    spec, data = tiny
    argv = ["compile", str(spec), "-o", str(tmp_path / "b"), "--explain", "guided", "--layer", "fc1", "--unit", "0"]
    assert main(argv) == 0
    capsys.readouterr()
    model = tmp_path / "b" / "tiny.guided.fc1.onnx"
    line = refusal(
        ["quantize", str(model), "--data", "npy", "--data-dir", str(data), "-o", str(tmp_path / "q.onnx")], capsys
    )
    assert line == (
        f"error: {model}: an explanation model (`specc compile --explain`) — quantize the classifier's model"
    )


def test_bench_int8_of_another_network(tiny, tmp_path, capsys):
    spec, data = tiny
    assert main(["compile", str(spec), "-o", str(tmp_path / "b")]) == 0
    int8 = tmp_path / "q.onnx"
    argv = ["quantize", str(tmp_path / "b" / "tiny.onnx"), "--data", "npy", "--data-dir", str(data), "--no-bench"]
    assert main([*argv, "--calibration", "8", "-o", str(int8)]) == 0
    other = tmp_path / "three.yaml"
    other.write_text(SPEC % (3, 3))
    capsys.readouterr()
    line = refusal(["bench", str(other), "--int8", str(int8), "--batch", "1", "--rounds", "1", "--no-compile"], capsys)
    assert line == f"error: --int8 {int8}: a model of 'tiny' (3x8x8 -> 2 classes), not of {other} (3x8x8 -> 3 classes)"


def _tampered(tmp_path, spec) -> str:
    """specc's model with conv1.weight declaring 100000 filters: onnxruntime refuses to load it."""
    import onnx

    assert main(["compile", str(spec), "-o", str(tmp_path / "b")]) == 0
    model = onnx.load(str(tmp_path / "b" / "tiny.onnx"))
    tensor = next(t for t in model.graph.initializer if t.name == "conv1.weight")
    tensor.dims[0] = 100000
    path = tmp_path / "tampered.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


@pytest.mark.parametrize("command", ["quantize", "bench"])
def test_a_model_onnxruntime_refuses_is_named(command, tiny, tmp_path, capsys):
    spec, data = tiny
    path = _tampered(tmp_path, spec)
    capsys.readouterr()
    extra = ["--data", "npy", "--data-dir", str(data)] if command == "quantize" else ["--batch", "1", "--rounds", "1"]
    line = refusal([command, path, *extra], capsys)
    assert line.startswith(f"error: {path}: onnxruntime cannot load this model (")
