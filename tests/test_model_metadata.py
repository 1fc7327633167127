"""ONNX models given to `specc predict` whose metadata no compiled spec can have — absurd
input shapes, labels that do not match the classes, preprocessing with keys missing, a huge
fixed batch — are refused in one line naming the model file and the field, before anything is
allocated from them."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from specc.cli import main

SPEC = """
name: small
input: {channels: 3, size: 8}
classes: 3
labels: [a, b, c]
layers:
  - {type: conv, filters: 3, kernel: 3}
  - {type: global_avg_pool}
"""


@pytest.fixture
def model(tmp_path) -> Path:
    (tmp_path / "small.yaml").write_text(SPEC)
    assert main(["compile", str(tmp_path / "small.yaml"), "--target", "onnx", "-o", str(tmp_path)]) == 0
    return tmp_path / "small.onnx"


@pytest.fixture
def image(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)
    return path


def forged(path: Path, key: str, value) -> Path:
    proto = onnx.load(path)
    for prop in proto.metadata_props:
        if prop.key == f"specc.{key}":
            prop.value = value if isinstance(value, str) else json.dumps(value)
    out = path.with_name(f"forged_{key}.onnx")
    onnx.save(proto, out)
    return out


def refusal(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "input",
            {"layout": "NCHW", "dtype": "float32", "shape": [3, 100000, 100000], "pixels": ""},
            "specc.input shape 3x100000x100000 — expected 1 to 4,096 channels and 1 to 16,384 pixels a side",
        ),
        (
            "input",
            {"layout": "NCHW", "dtype": "float32", "shape": [0, 8, 8], "pixels": ""},
            "specc.input shape 0x8x8 — expected 1 to 4,096 channels and 1 to 16,384 pixels a side",
        ),
        ("labels", ["a", "b"], "specc.labels names 2 classes, specc.classes says 3"),
        ("classes", 10**12, "specc.classes 1000000000000 — expected 1 to 10,000,000"),
        (
            "preprocessing",
            {"format": 1, "kind": "normalize", "shape": [3, 8, 8]},
            "specc.preprocessing: missing key 'mean'",
        ),
    ],
)
def test_forged_metadata_is_refused(model, image, capsys, key, value, expected):
    path = forged(model, key, value)
    assert refusal(capsys, "predict", str(path), str(image)) == f"error: {path}: {expected}"


def test_a_huge_fixed_batch_is_refused(model, image, capsys):
    proto = onnx.load(model)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 10**11
    path = model.with_name("batch.onnx")
    onnx.save(proto, path)
    expected = "the model's input has a fixed batch of 100,000,000,000 — expected 1 to 65,536 (compile it with --batch dynamic)"
    assert refusal(capsys, "predict", str(path), str(image)) == f"error: {path}: {expected}"


def test_compile_refuses_a_huge_fixed_batch(model, capsys):
    spec = model.with_name("small.yaml")
    err = refusal(capsys, "compile", str(spec), "--batch", str(10**11), "-o", str(model.parent / "b"))
    assert err == "error: --batch 100000000000: exceeds the limit of 65,536 (or 'dynamic')"


def test_predict_refuses_an_explanation_model_in_one_line(tmp_path, image, capsys):
    (tmp_path / "small.yaml").write_text(SPEC)
    spec = str(tmp_path / "small.yaml")
    assert (
        main(["compile", spec, "--target", "onnx", "--explain", "guided", "--layer", "conv1", "-o", str(tmp_path)]) == 0
    )
    path = tmp_path / "small.guided.conv1.onnx"
    err = refusal(capsys, "predict", str(path), str(image))
    assert err.startswith(f"error: {path}: an explanation model (`specc compile --explain`)")
