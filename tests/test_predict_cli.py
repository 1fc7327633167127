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


CUDA_LINE = (
    "error: --provider cuda: this onnxruntime has no CUDAExecutionProvider (it has {available})"
    " — for GPUs install onnxruntime-gpu in place of onnxruntime:"
    " pip uninstall -y onnxruntime && pip install 'specc[gpu]'\n"
)


def test_folders_are_searched_recursively_in_batches_skipping_non_images(files, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / ".cache").mkdir()
    for name, target in (("a.png", "a.png"), ("b.jpg", "sub/b.jpg"), ("c.jpg", ".cache/c.jpg")):
        (folder / target).write_bytes((files / name).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    model = str(files / "plain.onnx")
    assert main(["predict", model, str(folder), str(files / "c.jpg"), "--batch", "2", "--json", "--top-k", "4"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    expected_order = [str(folder / "a.png"), str(folder / "sub" / "b.jpg"), str(files / "c.jpg")]
    assert [r["image"] for r in data["results"]] == expected_order
    assert captured.err == f"note: skipped 1 file(s) that are not images by their extension: {folder / 'notes.txt'}\n"
    session = make_session(model, CPU)
    x = preprocess(np.stack([load_image(p, (3, 8, 8)) for p in expected_order]), None)
    logits = session.run(None, {"input": x})[0]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for result, row in zip(data["results"], probs):
        got = {t["index"]: t["prob"] for t in result["top"]}
        np.testing.assert_allclose([got[i] for i in range(4)], row, atol=1e-5)


def test_random_weights_warn_on_stderr(files, tmp_path, capsys):
    graph = specc.load(SPEC)
    save(emit(graph, random_weights(graph, 3), metadata={"weights": "seed 3"}), tmp_path / "seed.onnx")
    assert main(["predict", str(tmp_path / "seed.onnx"), str(files / "a.png"), "--provider", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{files / 'a.png'}: ")
    assert captured.err == (
        f"warning: {tmp_path / 'seed.onnx'} was compiled without trained weights (seed 3): its weights are random"
        " and so are its predictions — compile it with --weights CKPT\n"
    )


def test_cuda_is_refused_in_one_line_when_missing(files, capsys):
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        pytest.skip("onnxruntime-gpu is installed here")
    assert main(["predict", str(files / "plain.onnx"), str(files / "a.png"), "--provider", "cuda"]) == 2
    assert capsys.readouterr().err == CUDA_LINE.format(available=", ".join(available))


def test_both_onnxruntime_distributions_are_explained(files, monkeypatch, capsys):
    from specc_onnx import runtime

    monkeypatch.setattr(
        runtime, "installed_distributions", lambda: {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.0"}
    )
    assert main(["predict", str(files / "plain.onnx"), str(files / "a.png"), "--provider", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: --provider tensorrt: both onnxruntime 1.20.0 and onnxruntime-gpu 1.20.0 are installed;"
        " they share the import name onnxruntime"
    )
    assert err.endswith("pip uninstall -y onnxruntime onnxruntime-gpu, then pip install 'specc[gpu]'\n")


def test_explanation_models_write_their_maps(files, tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(SPEC)
    argv = ["compile", str(tmp_path / "tiny.yaml"), "--target", "onnx", "-o", str(tmp_path), "--explain", "guided"]
    assert main([*argv, "--layer", "conv1"]) == 0
    model = tmp_path / "tiny.guided.conv1.onnx"
    capsys.readouterr()
    one_line_error(capsys, ["predict", str(model), str(files / "a.png")], "pass --out DIR")
    out = tmp_path / "maps"
    assert main(["predict", str(model), str(files / "a.png"), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    saved = np.load(out / "a.guided.conv1.npy")
    assert saved.shape == (3, 8, 8) and result["npy"] == str(out / "a.guided.conv1.npy")
    # the oracle: the same model run by hand, explaining the strongest unit of conv1
    session = make_session(model, CPU)
    x = preprocess(load_image(str(files / "a.png"), (3, 8, 8))[None], None)
    activation = session.run(["activation"], {"input": x, "unit_mask": np.zeros((1, 4, 8, 8), np.float32)})[0]
    unit = np.unravel_index(int(np.argmax(activation[0])), activation.shape[1:])
    mask = np.zeros((1, 4, 8, 8), np.float32)
    mask[(0, *unit)] = 1
    np.testing.assert_allclose(saved, session.run(["reconstruction"], {"input": x, "unit_mask": mask})[0][0], atol=1e-6)
    assert result["unit"] == [int(i) for i in unit]
    with Image.open(out / "a.guided.conv1.png") as image:
        assert image.size == (8, 8) and image.mode == "RGB"
