"""`specc compile`: the files it writes, what it prints, and what it refuses."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import onnx
import torch

from specc import build
from specc.cli import main
from specc_onnx.runtime import make_session, read_metadata
from specc_torch.weights import checkpoint_payload, save_checkpoint

CPU = ["CPUExecutionProvider"]  # parity is defined on the CPU provider (CUDA may use TF32)

ROOT = Path(__file__).resolve().parents[1]
ALLCNN_C = str(ROOT / "specs" / "allcnn_c.yaml")
RESNET = str(ROOT / "specs" / "resnet_tiny.yaml")

TINY = """
name: tiny
input: {channels: 3, size: 8}
classes: 4
labels: [w, x, y, z]
layers:
  - {name: c1, type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {name: bn, type: batch_norm}
  - {name: pool, type: global_avg_pool}
  - {name: fc, type: linear, units: 4}
  - {name: prob, type: softmax}
"""


def initializers(path: Path) -> dict[str, np.ndarray]:
    return {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def test_compile_writes_both_files_with_sizes_and_the_same_weights(tmp_path, capsys):
    out = tmp_path / "build"
    assert main(["compile", ALLCNN_C, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1,369,738" in printed  # the summary
    onnx_path, py_path = out / "allcnn_c.onnx", out / "allcnn_c.py"
    assert f"{onnx_path}  (5.2 MiB)" in printed and f"{py_path}  (" in printed
    assert sorted(p.name for p in out.iterdir()) == ["allcnn_c.onnx", "allcnn_c.py"]  # no temporary files
    module = build(ALLCNN_C, seed=0)
    weights = initializers(onnx_path)
    assert np.array_equal(weights["conv5.weight"], module.state_dict()["conv5.weight"].numpy())
    meta = read_metadata(onnx_path)
    assert (meta.name, meta.output, meta.preprocessing, meta.extra["weights"]) == ("allcnn_c", "logits", None, "seed 0")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = module.eval()(x).numpy()
    got = make_session(onnx_path, CPU).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    namespace: dict = {}
    exec(compile(py_path.read_text(), str(py_path), "exec"), namespace)
    standalone = namespace["AllcnnC"]()
    standalone.load_state_dict(module.state_dict())
    with torch.inference_mode():
        assert torch.equal(standalone.eval()(x), module(x))


def test_refuses_to_overwrite_without_force(tmp_path, capsys, write_spec):
    spec = write_spec(TINY)
    assert main(["compile", spec, "-o", str(tmp_path), "--target", "onnx"]) == 0
    before = (tmp_path / "tiny.onnx").read_bytes()
    capsys.readouterr()
    assert main(["compile", spec, "-o", str(tmp_path), "--target", "onnx", "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'tiny.onnx'} already exists — pass --force to overwrite"
    assert (tmp_path / "tiny.onnx").read_bytes() == before
    assert main(["compile", spec, "-o", str(tmp_path), "--target", "onnx", "--seed", "3", "--force"]) == 0
    assert (tmp_path / "tiny.onnx").read_bytes() != before
    assert read_metadata(tmp_path / "tiny.onnx").extra["weights"] == "seed 3"


def test_single_targets(tmp_path, write_spec):
    spec = write_spec(TINY)
    assert main(["compile", spec, "-o", str(tmp_path / "t"), "--target", "torch"]) == 0
    assert [p.name for p in (tmp_path / "t").iterdir()] == ["tiny.py"]
    assert main(["compile", spec, "-o", str(tmp_path / "o"), "--target", "onnx"]) == 0
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["tiny.onnx"]


def test_compile_is_deterministic(tmp_path, write_spec):
    spec = write_spec(TINY)
    for folder in ("a", "b"):
        assert main(["compile", spec, "-o", str(tmp_path / folder)]) == 0
    for name in ("tiny.onnx", "tiny.py"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_options_batch_output_opset_no_fold(tmp_path, write_spec):
    spec = write_spec(TINY)
    args = ["compile", spec, "-o", str(tmp_path), "--target", "onnx", "--batch", "3", "--output", "probs"]
    assert main([*args, "--opset", "18", "--no-fold"]) == 0
    model = onnx.load(tmp_path / "tiny.onnx")
    assert model.opset_import[0].version == 18
    assert model.graph.output[0].name == "probs"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    assert any(n.op_type == "BatchNormalization" for n in model.graph.node)
    probs = make_session(tmp_path / "tiny.onnx", CPU).run(None, {"input": np.ones((3, 3, 8, 8), np.float32)})[0]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


def test_weights_from_a_checkpoint_carry_preprocessing(tmp_path, capsys, write_spec):
    spec = write_spec(TINY)
    module = build(spec, seed=9)
    preprocessing = {"format": 1, "kind": "normalize", "shape": [3, 8, 8], "pixel_scale": 1 / 255}
    preprocessing |= {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    save_checkpoint(tmp_path / "ckpt.pt", checkpoint_payload(module, preprocessing=preprocessing))
    torch.save(module.state_dict(), tmp_path / "plain.pt")
    for name in ("ckpt.pt", "plain.pt"):
        out = tmp_path / name.removesuffix(".pt")
        assert main(["compile", spec, "--weights", str(tmp_path / name), "-o", str(out), "--target", "onnx"]) == 0
        assert np.array_equal(initializers(out / "tiny.onnx")["fc.weight"], module.state_dict()["fc.weight"].numpy())
        meta = read_metadata(out / "tiny.onnx")
        assert meta.extra["weights"] == f"checkpoint {name}"
        assert meta.preprocessing == (preprocessing if name == "ckpt.pt" else None)
    capsys.readouterr()
    other = write_spec(TINY.replace("filters: 4", "filters: 5"), "other.yaml")
    assert main(["compile", other, "--weights", str(tmp_path / "ckpt.pt"), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()  # nothing written when the weights do not fit


def test_spec_from_stdin(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TINY.encode())))
    assert main(["compile", "-", "-o", str(tmp_path), "--target", "onnx"]) == 0
    assert (tmp_path / "tiny.onnx").exists()


def test_bad_arguments_are_one_line(tmp_path, capsys, write_spec):
    spec = write_spec(TINY)
    for extra, message in (
        (["--batch", "zero"], "--batch zero: expected 'dynamic' or a positive integer"),
        (["--opset", "3"], "--opset 3: expected an integer from 13 to"),
    ):
        assert main(["compile", spec, "-o", str(tmp_path / "b"), *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
