"""Explain models in ONNX: the backward pass written as ONNX nodes matches the torch pass
within 1e-4 for every rule, on a max-pooled, a strided and an every-layer-type network."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from test_viz_explain import EVERY_OP, randomise_bn

import specc
from specc.cli import main
from specc_explain_onnx import MASK_INPUT, check_explain_model, emit_explain
from specc_onnx.runtime import read_metadata
from specc_torch.weights import checkpoint_payload, save_checkpoint, state_dict_numpy
from specc_viz import METHODS, explain

POOLED = """
name: pooled
input: {channels: 3, size: 12}
classes: 5
layers:
  - {type: dropout, rate: 0.2}
  - {name: c1, type: conv, filters: 6, kernel: 3, padding: same, activation: relu}
  - {name: pool, type: max_pool, kernel: 3, stride: 2, padding: same}
  - {name: c2, type: conv, filters: 8, kernel: 3, padding: same, activation: relu}
  - {name: c3, type: conv, filters: 5, kernel: 1, activation: relu}
  - {name: gap, type: global_avg_pool}
  - {type: softmax}
"""
STRIDED = POOLED.replace(
    "{name: pool, type: max_pool, kernel: 3, stride: 2, padding: same}",
    "{name: pool, type: conv, filters: 6, kernel: 3, stride: 2, padding: same, activation: relu}",
).replace("size: 12", "size: 11")  # odd: the strided conv's transpose needs output padding


def run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["reconstruction"], feeds)[0]


CASES = [(POOLED, "c2", "3"), (POOLED, "c3", "2,3,4"), (STRIDED, "c2", "1,2,2"), (EVERY_OP, "fc1", "4")]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("spec", "layer", "unit"), CASES, ids=["pool-channel", "pool-position", "strided", "every-op"])
def test_onnx_explain_matches_the_torch_pass(spec, layer, unit, method):
    model = randomise_bn(specc.build(spec, seed=7))
    c, h, w = model.graph.input_shape
    x = torch.randn(3, c, h, w, generator=torch.Generator().manual_seed(1))
    expected = explain(model, x, layer=layer, units=unit, method=method).numpy()
    assert np.abs(expected).max() > 1e-3  # a live unit, so the test compares something
    onnx_model = emit_explain(model.graph, state_dict_numpy(model), method=method, layer=layer, unit=unit)
    check_explain_model(onnx_model, model.graph)  # checker (full) and strict shape inference
    got = run(onnx_model, {"input": x.numpy()})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_unit_mask_input_chooses_the_unit_at_run_time():
    model = specc.build(POOLED, seed=3)
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    onnx_model = emit_explain(model.graph, state_dict_numpy(model), method="deconvnet", layer="c2")
    assert [i.name for i in onnx_model.graph.input] == ["input", MASK_INPUT]
    mask = np.zeros((2, 8, 6, 6), dtype=np.float32)
    mask[0, 5] = 1  # image 0: channel 5
    mask[1, 2, 3, 1] = 1  # image 1: one position
    got = run(onnx_model, {"input": x.numpy(), MASK_INPUT: mask})
    expected = [
        explain(model, x[i : i + 1], layer="c2", units=u, method="deconvnet")[0] for i, u in ((0, 5), (1, "2,3,1"))
    ]
    np.testing.assert_allclose(got, torch.stack(expected).numpy(), rtol=0, atol=1e-4)
    # The layers after c2 are pruned: no node reads c3's weights.
    assert not any("c3" in t.name for t in onnx_model.graph.initializer)


def test_compile_explain_writes_a_checked_model(tmp_path, write_spec):
    spec = write_spec(POOLED)
    model = specc.build(spec, seed=0)
    ckpt = tmp_path / "ckpt.pt"
    save_checkpoint(ckpt, checkpoint_payload(model, preprocessing=None))
    out = tmp_path / "build"
    args = ["compile", spec, "--weights", str(ckpt), "--target", "onnx", "--explain", "guided", "--layer", "c3"]
    assert main([*args, "--unit", "1", "-o", str(out)]) == 0
    path = out / "pooled.guided.c3.onnx"
    meta = read_metadata(path)
    assert meta.output == "reconstruction" and '"method":"guided"' in meta.extra["explain"]
    x = torch.randn(1, 3, 12, 12)
    got = ort.InferenceSession(str(path)).run(["reconstruction"], {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, explain(model, x, layer="c3", units=1).numpy(), rtol=0, atol=1e-4)
    assert main([*args, "--unit", "9", "-o", str(out), "--force"]) == 2  # c3 has 5 channels
    assert main(["compile", spec, "--target", "onnx", "--layer", "c3", "-o", str(out)]) == 2  # no --explain
    assert main([*args[:-2], "--layer", "nope", "-o", str(out)]) == 2
