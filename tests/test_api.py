"""The Python API: what `import specc` costs and shows, one version, and compile / train /
predict checked against outside oracles (onnxruntime, torch, the files the run wrote)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tomllib
import torch
from PIL import Image

import specc
from specc.errors import SpecError, UserError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "fmnist-00000-ankle-boot.png"
TINY = """\
name: tiny
input: {channels: 1, size: 28}
classes: 3
labels: [a, b, c]
layers:
  - {type: conv, filters: 4, kernel: 3, stride: 2, activation: relu}
  - {type: global_avg_pool}
  - {type: linear, units: 3}
"""
API_FUNCTIONS = ("load", "check", "summary", "fmt", "transform", "build", "compile", "train", "predict", "explain")


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- what `import specc` costs and shows -------------------------------------------------------
def test_import_is_light_and_lists_the_api():
    out = run_python(
        "import sys, json, pydoc, specc\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'PIL', 'specc_viz') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'dir': dir(specc), 'help': pydoc.render_doc(specc, renderer=pydoc.plaintext)}))"
    )
    found = json.loads(out)
    assert found["heavy"] == []
    for name in (*API_FUNCTIONS, "from_onnx", "from_torch", "__version__"):
        assert name in found["dir"], name
    functions = found["help"].split("\nFUNCTIONS\n")[1].split("\nDATA\n")[0]
    listed = {line.split("(")[0].strip() for line in functions.splitlines() if line.startswith("    ") and "(" in line}
    assert listed >= {*API_FUNCTIONS, "from_onnx", "from_torch"}


def test_train_stays_the_function_after_the_training_package_loads():
    import specc.training.config
    import specc.training.loop  # noqa: F401  (a first import of a submodule sets it on its package)

    assert callable(specc.train) and specc.train.__module__ == "specc.api.training"


def test_one_version():
    cli = subprocess.run([sys.executable, "-m", "specc", "--version"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0
    assert cli.stdout.split()[-1] == specc.__version__ == importlib.metadata.version("specc")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "specc.version.__version__"}
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["specc"]
    assert (ROOT / "specc" / "py.typed").is_file()


# -- compile --------------------------------------------------------------------------------------
def ort_scores(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    return specc.compile(TINY, out=tmp_path_factory.mktemp("build"), seed=3)


def test_compile_writes_both_targets_that_agree_with_torch(compiled):
    assert sorted(compiled) == ["onnx", "torch"] and compiled["onnx"].name == "tiny.onnx"
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    module = specc.build(TINY, seed=3).eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_scores(compiled["onnx"], x), expected, rtol=1e-5, atol=1e-6)
    spec = importlib.util.spec_from_file_location("tiny_generated", compiled["torch"])
    assert spec and spec.loader
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    net = next(v for v in vars(generated).values() if isinstance(v, type) and issubclass(v, torch.nn.Module))()
    net.load_state_dict(module.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(net.eval()(torch.from_numpy(x)).numpy(), expected, rtol=1e-6, atol=1e-7)


def test_compile_refuses_what_the_cli_refuses(compiled):
    out = compiled["onnx"].parent
    with pytest.raises(UserError, match=r"tiny.onnx, .*tiny.py already exist\(s\) — pass force=True"):
        specc.compile(TINY, out=out)
    with pytest.raises(UserError, match=r"target 'tflite': expected one of onnx, torch, all"):
        specc.compile(TINY, target="tflite", out=out)
    bad = {"conv1.weight": np.zeros((4, 1, 5, 5), np.float32)}
    with pytest.raises(UserError, match=r"conv1.weight \(4, 1, 5, 5\) \(expected \(4, 1, 3, 3\)\)"):
        specc.compile(TINY, target="onnx", out=out, weights=bad, force=True)


def test_compile_takes_imported_weights(compiled, tmp_path):
    graph, weights = specc.from_onnx(compiled["onnx"])
    again = specc.compile(graph, target="onnx", out=tmp_path, weights=weights)
    assert list(again) == ["onnx"]
    x = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(ort_scores(again["onnx"], x), ort_scores(compiled["onnx"], x), rtol=1e-5, atol=1e-6)


# -- predict --------------------------------------------------------------------------------------
def test_predict_onnx_file_and_array_agree_with_onnxruntime(compiled):
    pixels = np.asarray(Image.open(SAMPLE).convert("L"), dtype=np.float32)[None]  # (1, 28, 28), 0..255
    scores = ort_scores(compiled["onnx"], (pixels / 255.0)[None].astype(np.float32))  # no preprocessing recorded
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    from_file = specc.predict(compiled["onnx"], SAMPLE)
    from_array = specc.predict(compiled["onnx"], pixels)
    np.testing.assert_allclose(from_file.probs, expected, rtol=1e-5)
    np.testing.assert_allclose(from_array.probs, expected, rtol=1e-5)
    assert from_file.labels == ("a", "b", "c")
    assert from_file.predicted == [("a", "b", "c")[int(expected.argmax())]]
    top = from_file.top(2)[0]
    order = np.argsort(-expected[0])[:2]
    assert [label for label, _ in top] == [("a", "b", "c")[i] for i in order]
    assert [p for _, p in top] == pytest.approx(expected[0][order], rel=1e-5)


def test_predict_module_and_refusals(compiled):
    module = specc.build(TINY, seed=3)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(module.eval()(torch.from_numpy(pixels / 255.0)), dim=1).numpy()
    module.train()
    np.testing.assert_allclose(specc.predict(module, pixels).probs, expected, rtol=1e-5, atol=1e-7)
    assert module.training  # put back as it was
    with pytest.raises(UserError, match=r"an array of shape \(3, 32, 32\) — .* takes \(N, 1, 28, 28\)"):
        specc.predict(compiled["onnx"], np.zeros((3, 32, 32), np.float32))
    with pytest.raises(UserError, match="no such image file"):
        specc.predict(compiled["onnx"], "missing.png")


# -- train ------------------------------------------------------------------------------------------
RECIPE = {"dataset": "synthetic", "dataset_options": {"size": 32}, "epochs": 1, "batch_size": 16, "seed": 5}


def test_train_in_process_returns_what_the_run_wrote(tmp_path):
    first = specc.train(TINY, out=tmp_path / "a", threads=1, quiet=True, **RECIPE)
    assert first.epochs == 1 and first.stopped is None
    assert first.checkpoint == tmp_path / "a" / "last.pt" and first.checkpoint.is_file()
    assert first.best_checkpoint == tmp_path / "a" / "best.pt"
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    epoch_rows = [row for row in rows if row.get("epoch") == 1 and "test_acc" in row]
    assert epoch_rows and epoch_rows[-1]["test_acc"] == first.metrics["test_acc"]
    assert first.best is not None and first.best["accuracy"] == first.metrics["test_acc"]
    # The same recipe again: the same weights, bit for bit.
    second = specc.train(TINY, out=tmp_path / "b", threads=1, quiet=True, **RECIPE)
    a = torch.load(first.checkpoint, weights_only=True)["model"]
    b = torch.load(second.checkpoint, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_stops_at_max_steps_and_names_a_bad_keyword(tmp_path):
    stopped = specc.train(TINY, out=tmp_path / "c", max_steps=1, quiet=True, **RECIPE)
    assert stopped.stopped and stopped.metrics == {} and stopped.checkpoint.is_file()
    with pytest.raises(SpecError, match=r"^epoch=3: train: unknown key 'epoch' for train — did you mean 'epochs'\?$"):
        specc.train(TINY, out=tmp_path / "d", epoch=3)
    assert not (tmp_path / "d").exists()
