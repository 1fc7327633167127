"""`specc predict`: PNG/JPEG files through a compiled model, preprocessed as its metadata says."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

import specc
from specc.cli import main
from specc.commands.predict import load_image, preprocess
from specc_onnx import emit, random_weights, save
from specc_onnx.runtime import make_session

CPU = ["CPUExecutionProvider"]  # parity is defined on the CPU provider (CUDA may use TF32)

SPEC = """
name: tiny
input: {channels: 3, size: 8}
classes: 4
labels: [red, green, blue, grey]
layers:
  - {type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {type: global_avg_pool}
  - {type: linear, units: 4}
"""
NORMALIZE = {
    "format": 1,
    "kind": "normalize",
    "shape": [3, 8, 8],
    "pixel_scale": 1 / 255,
    "mean": [0.5, 0.4, 0.3],
    "std": [0.2, 0.25, 0.3],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    graph = specc.load(SPEC)
    weights = random_weights(graph, 0)
    save(emit(graph, weights), folder / "plain.onnx")
    save(emit(graph, weights, batch=2, output="probs", metadata={"preprocessing": NORMALIZE}), folder / "norm.onnx")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / "b.jpg")  # grey: converted to RGB
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / "c.jpg")
    return folder


def test_top_k_lines(files, capsys):
    assert main(["predict", str(files / "plain.onnx"), str(files / "a.png"), str(files / "b.jpg"), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, image in zip(lines, ("a.png", "b.jpg")):
        name, rest = line.split(": ", 1)
        assert name.endswith(image)
        labels = [part.split(" (p=")[0] for part in rest.split(", ")]
        assert len(labels) == 2 and set(labels) <= {"red", "green", "blue", "grey"}


def test_json_matches_a_manual_run_with_the_metadata_preprocessing(files, capsys):
    images = [str(files / n) for n in ("a.png", "b.jpg", "c.jpg")]  # 3 images, model batch fixed at 2
    assert main(["predict", str(files / "norm.onnx"), *images, "--json", "--top-k", "4"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "tiny" and data["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    pixels = np.stack([load_image(p, (3, 8, 8)) for p in images])
    mean, std = np.array(NORMALIZE["mean"])[:, None, None], np.array(NORMALIZE["std"])[:, None, None]
    x = ((pixels / 255 - mean) / std).astype(np.float32)
    np.testing.assert_allclose(preprocess(pixels, NORMALIZE), x, atol=1e-6)
    session = make_session(files / "norm.onnx", CPU)
    expected = np.concatenate(
        [session.run(None, {"input": x[:2]})[0], session.run(None, {"input": np.concatenate([x[2:], x[2:]])})[0][:1]]
    )
    for result, row in zip(data["results"], expected):
        probs = {t["index"]: t["prob"] for t in result["top"]}
        np.testing.assert_allclose([probs[i] for i in range(4)], row, atol=1e-4)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert [t["prob"] for t in result["top"]] == sorted(probs.values(), reverse=True)


def test_resizes_bilinear_to_the_model_input(files):
    pixels = load_image(str(files / "a.png"), (3, 8, 8))
    assert pixels.shape == (3, 8, 8) and pixels.dtype == np.float32
    with Image.open(files / "a.png") as image:
        expected = np.asarray(image.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_array_equal(pixels, expected.transpose(2, 0, 1))
    assert load_image(str(files / "a.png"), (1, 8, 8)).shape == (1, 8, 8)


def one_line_error(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
    assert "Traceback" not in err


def test_corrupt_and_foreign_models_are_one_line(files, tmp_path, capsys):
    image = str(files / "a.png")
    (tmp_path / "corrupt.onnx").write_bytes((files / "plain.onnx").read_bytes()[:200] + b"\xff" * 50)
    one_line_error(capsys, ["predict", str(tmp_path / "corrupt.onnx"), image], "not an ONNX model")
    (tmp_path / "text.onnx").write_text("hello, I am not a model\n")
    one_line_error(capsys, ["predict", str(tmp_path / "text.onnx"), image], "not an ONNX model")
    relu = onnx.helper.make_node("Relu", ["x"], ["y"])
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([relu], "g", [x], [y])), tmp_path / "foreign.onnx")
    one_line_error(capsys, ["predict", str(tmp_path / "foreign.onnx"), image], "not one specc compiled")
    one_line_error(capsys, ["predict", str(tmp_path / "missing.onnx"), image], "no such file")


def test_bad_images_are_one_line(files, tmp_path, capsys):
    model = str(files / "plain.onnx")
    one_line_error(capsys, ["predict", model, str(tmp_path / "missing.png")], "no such image file")
    (tmp_path / "fake.png").write_text("not an image")
    one_line_error(capsys, ["predict", model, str(tmp_path / "fake.png")], "fake.png: not a readable image")
    one_line_error(capsys, ["predict", model, str(files / "a.png"), "--top-k", "0"], "--top-k 0")


def test_cuda_is_chosen_when_onnxruntime_gpu_is_installed(monkeypatch):
    import onnxruntime

    from specc_onnx.runtime import default_providers

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
