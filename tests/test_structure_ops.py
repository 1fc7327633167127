"""The structure ops against outside oracles: torch.nn modules and functions (shapes, state,
numbers), onnxruntime with onnx's checker and strict shape inference at opsets 13 and 17,
autograd for the backward definitions, and small hand-computed cases. `tests/test_op_table.py`
runs every op through the same oracles once; these tests cover the geometry each op allows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import specc
import specc_torch
from specc.errors import SpecError
from specc.resample import linear_rows, matrix, nearest_sources
from specc_explain_onnx import check_explain_model, emit_explain
from specc_onnx import emit, fold_batch_norm, to_bytes, verify
from specc_onnx.runtime import make_session
from specc_torch import SpeccModule
from specc_torch.codegen import generate
from specc_torch.weights import state_dict_numpy
from specc_viz import explain
from tests.test_op_table import randomised

CPU = ["CPUExecutionProvider"]
C0 = "  - {name: c0, type: conv, filters: 4, kernel: 3, padding: same, activation: leaky_relu, slope: 0.2}\n"
HEAD = "  - {type: flatten}\n  - {name: fc, type: linear, units: 3}\n"


def net(layers: str, *, channels: int = 3, size: int | str = 6, classes: int = 3, head: str = HEAD) -> specc.Graph:
    return specc.load(
        f"name: s\ninput: {{channels: {channels}, size: {size}}}\nclasses: {classes}\nlayers:\n{layers}{head}"
    )


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        specc.check(specc.load(text) if "layers:" in text else net(text))
    return [d.format() for d in info.value.diagnostics]


def onnx_matches_torch(graph, opsets=(13, 17, 18), folds=(False,), batch=2) -> None:
    """checker + strict shape inference (specc's shapes, the batch axis symbolic) and
    onnxruntime == the torch forward, with every weight random (opset 18: axes as inputs)."""
    model = randomised(graph)
    c, h, w = graph.input_shape
    x = torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    for opset in opsets:
        for fold in folds:
            onnx_model = emit(graph, state_dict_numpy(model), opset=opset, fold_bn=fold)
            data = to_bytes(onnx_model)
            verify(onnx_model, graph, data)
            got = np.asarray(make_session(data, CPU).run(None, {"input": x.numpy()})[0])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def engines_agree(graph, layer: str = "t", method: str = "backprop") -> None:
    """replay (specc.backward on tensors) == autograd == the ONNX explain model."""
    model = randomised(graph)
    c, h, w = graph.input_shape
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(2))
    replayed = explain(model, x, layer=layer, units=[1], method=method, engine="replay")
    autograd = explain(model, x, layer=layer, units=[1], method=method, engine="autograd")
    torch.testing.assert_close(replayed, autograd, rtol=1e-5, atol=1e-6)
    onnx_model = emit_explain(graph, state_dict_numpy(model), method=method, layer=layer, unit=1)
    check_explain_model(onnx_model, graph)  # checker (full) and strict shape inference
    got = np.asarray(make_session(to_bytes(onnx_model), CPU).run(["reconstruction"], {"input": x.numpy()})[0])
    np.testing.assert_allclose(got, replayed[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    assert float(replayed.abs().sum()) > 0


# -- conv_transpose ------------------------------------------------------------------------------
GEOMETRIES = [  # kernel, stride, padding, output_padding, dilation, groups, input size
    (3, 2, 1, 1, 1, 1, 5),
    (4, 2, 1, 0, 1, 2, 4),
    ([3, 2], [2, 3], [0, 1], [1, 2], 1, 1, 5),
    (3, 1, 2, 1, 2, 1, 6),  # output_padding >= stride, below the dilation, within the padding
    (3, 1, 0, 2, 3, 2, 4),  # ... beyond the padding: zero rows appended, then the bias
    (2, 3, 0, 2, 1, 4, 3),
]


@pytest.mark.parametrize("k, s, p, op, d, g, size", GEOMETRIES)
def test_conv_transpose_is_torchs(k, s, p, op, d, g, size):
    graph = net(
        C0 + f"  - {{name: t, type: conv_transpose, filters: 8, kernel: {k}, stride: {s}, padding: {p},"
        f" output_padding: {op}, dilation: {d}, groups: {g}}}\n",
        size=size,
    )
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)  # noqa: E731
    oracle = torch.nn.ConvTranspose2d(4, 8, pair(k), pair(s), pair(p), pair(op), g, True, pair(d))
    report = specc.check(graph).report
    out = oracle(torch.zeros(1, 4, size, size))
    assert report.shapes["t"] == tuple(out.shape[1:])
    assert report.info("t").params == sum(t.numel() for t in oracle.parameters())
    assert specc_torch.build(graph).get_submodule("t").state_dict().keys() == {"weight", "bias"}
    kh, kw = pair(k)
    assert report.info("t").macs == 4 * size * size * (8 // g) * kh * kw  # every input pixel writes a kernel
    onnx_matches_torch(graph)
    engines_agree(graph)


def test_batch_norm_folds_into_a_grouped_conv_transpose():
    graph = net(
        C0 + "  - {name: ct, type: conv_transpose, filters: 6, kernel: 2, stride: 2, groups: 2, bias: false}\n"
        "  - {name: t, type: batch_norm}\n"
    )
    assert fold_batch_norm(graph, state_dict_numpy(randomised(graph))).folded == (("ct", "t"),)
    onnx_matches_torch(graph, folds=(False, True))


@pytest.mark.parametrize(
    "layer, message",
    [
        (
            "{name: t, type: conv_transpose, filters: 2, kernel: 3, stride: 2, output_padding: 2}",
            "output_padding 2 (height) must be smaller than the stride (2) or the dilation (1)",
        ),
        (
            "{name: t, type: conv_transpose, filters: 2, kernel: 3, padding: 5}",
            "3x3 conv_transpose on a 6x6 input, height: (6 - 1)*1 - 2*5 + 1*(3 - 1) + 0 + 1 = -2",
        ),
        (
            "{name: t, type: conv_transpose, filters: 3, kernel: 3, groups: 2}",
            "groups=2 must divide both the input channels (4) and filters (3)",
        ),
    ],
)
def test_conv_transpose_refusals_are_located(layer, message):
    [error] = errors(C0 + f"  - {layer}\n")
    assert error.startswith("<string>:6:5: layers[1] (t): ") and message in error, error


# -- upsample --------------------------------------------------------------------------------------
def test_nearest_sources_are_torchs():
    for size in range(1, 41):
        x = torch.arange(size, dtype=torch.float32).reshape(1, 1, size, 1)
        for out in range(1, 90):
            want = F.interpolate(x, size=(out, 1), mode="nearest").flatten().long().tolist()
            assert nearest_sources(size, out) == want, (size, out)


@pytest.mark.parametrize("align_corners", [False, True])
def test_linear_rows_are_torchs(align_corners):
    """The weights are PyTorch's, read off by interpolating unit vectors (equal on this build;
    within 2 float32 steps of a source coordinate <= 64 where the kernel's multiply-add is not fused)."""
    for size in (1, 2, 3, 7, 13, 40):
        eye = torch.eye(size).reshape(size, 1, size, 1)
        for out in range(1, 60):
            want = F.interpolate(eye, size=(out, 1), mode="bilinear", align_corners=align_corners)[:, 0, :, 0].T
            got = torch.tensor(matrix(linear_rows(size, out, align_corners), size))
            torch.testing.assert_close(got, want, rtol=0, atol=2 * 2**-23 * 64)


UPSAMPLES = [
    "{name: t, type: upsample, scale: 2}",
    "{name: t, type: upsample, scale: [3, 2]}",
    "{name: t, type: upsample, size: [4, 13]}",  # down along one axis, a non-integer ratio along the other
    "{name: t, type: upsample, mode: bilinear, scale: 2}",
    "{name: t, type: upsample, mode: bilinear, size: [11, 5], align_corners: true}",
    "{name: t, type: upsample, mode: bilinear, size: [6, 1]}",
]


@pytest.mark.parametrize("layer", UPSAMPLES)
def test_upsample_matches_torch_onnx_and_autograd(layer):
    graph = net(C0 + f"  - {layer}\n")
    onnx_matches_torch(graph)
    engines_agree(graph)


def test_upsample_by_hand():
    graph = net("  - {name: t, type: upsample, scale: [2, 3]}\n", channels=1, size=2)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    want = torch.tensor([[1, 1, 1, 2, 2, 2]] * 2 + [[3, 3, 3, 4, 4, 4]] * 2, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(specc_torch.build(graph).layer_output(x, "t")[0, 0], want)


@pytest.mark.parametrize(
    "layer, message",
    [
        ("{name: t, type: upsample}", "upsample needs either scale or size, and has neither — expected exactly one"),
        ("{name: t, type: upsample, scale: 2, size: 8}", "has both"),
        ("{name: t, type: upsample, scale: 2, align_corners: true}", "align_corners applies to mode bilinear only"),
        (
            "{name: t, type: upsample, mode: cubic, scale: 2}",
            "mode = 'cubic' is not valid — expected nearest or bilinear",
        ),
    ],
)
def test_upsample_refusals_are_located(layer, message):
    text = f"name: s\ninput: {{channels: 3, size: 6}}\nclasses: 3\nlayers:\n  - {layer}\n{HEAD}"
    with pytest.raises(SpecError) as info:
        specc.check(text)
    [error] = [d.format() for d in info.value.diagnostics]
    assert error.startswith("<string>:5:") and "layers[0] (t)" in error and message in error, error


# -- pad -------------------------------------------------------------------------------------------
X_PAD = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])  # (1, 1, 2, 3)
PADS = {  # mode -> (top, bottom, left, right) = (1, 0, 2, 1), by hand
    "constant": [[0, 0, 0, 0, 0, 0], [0, 0, 1, 2, 3, 0], [0, 0, 4, 5, 6, 0]],
    "reflect": [[6, 5, 4, 5, 6, 5], [3, 2, 1, 2, 3, 2], [6, 5, 4, 5, 6, 5]],
    "replicate": [[1, 1, 1, 2, 3, 3], [1, 1, 1, 2, 3, 3], [4, 4, 4, 5, 6, 6]],
}


@pytest.mark.parametrize("mode", sorted(PADS))
def test_pad_by_hand(mode):
    graph = net(f"  - {{name: t, type: pad, padding: [1, 0, 2, 1], mode: {mode}}}\n", channels=1, size="[2, 3]")
    with torch.no_grad():
        got = specc_torch.build(graph).layer_output(X_PAD, "t")
    assert got[0, 0].tolist() == PADS[mode]


@pytest.mark.parametrize("mode", sorted(PADS))
def test_pad_matches_torch_onnx_and_autograd(mode):
    value = ", value: -0.5" if mode == "constant" else ""
    graph = net(C0 + f"  - {{name: t, type: pad, padding: [2, 1, 0, 3], mode: {mode}{value}}}\n")
    onnx_matches_torch(graph)
    engines_agree(graph)


def test_pad_refusals_and_canonical_form():
    [error] = errors(C0 + "  - {name: t, type: pad, padding: [1, 6, 0, 0], mode: reflect}\n")
    assert "<string>:6:5: layers[1] (t): reflect padding of 6 rows on a 6x6 input — expected fewer than 6" in error
    [error] = errors(C0 + "  - {name: t, type: pad, padding: 1, mode: replicate, value: 2}\n")
    assert "value 2 applies to mode constant only — this pad is replicate" in error
    graph = net("  - {name: t, type: pad, padding: [1, 1, 2, 2]}\n  - {name: u, type: pad, padding: [3, 3, 3, 3]}\n")
    assert [graph.node(name).op.params()["padding"] for name in ("t", "u")] == [[1, 2], 3]
    assert "{name: t, type: pad, padding: [1, 2]}" in specc.fmt(graph)


# -- identity, mul, scale --------------------------------------------------------------------------
def test_identity_emits_no_node():
    graph = net(C0 + "  - {name: t, type: identity}\n")
    model = emit(graph, state_dict_numpy(randomised(graph)))
    assert not any(node.name == "t" for node in model.graph.node)
    onnx_matches_torch(graph)


def test_mul_is_squeeze_excitation_by_hand():
    graph = net(
        "  - {name: gate, type: global_avg_pool}\n  - {name: t, type: mul, inputs: [input, gate, input]}\n",
        channels=2,
        size=2,
    )
    x = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]], [[-2.0, 0.0], [2.0, 4.0]]]])  # channel means 2 and 1
    with torch.no_grad():
        got = specc_torch.build(graph).layer_output(x, "t")
    assert got[0].tolist() == [[[2.0, 18.0], [2.0, 18.0]], [[4.0, 0.0], [4.0, 16.0]]]  # x * mean * x


@pytest.mark.parametrize(
    "inputs, message",
    [
        ("[c0, g8]", "a gate of 8 channels (8) for a 4x6x6 map — expected 4 (a gate has one value per channel)"),
        ("[c0, small]", "shape mismatch: 4x6x6 vs 4x3x3 — expected equal shapes, or a C or Cx1x1 gate"),
    ],
)
def test_mul_refuses_other_broadcasts(inputs, message):
    layers = (
        C0 + "  - {name: flat, type: flatten}\n  - {name: g8, type: linear, units: 8}\n"
        "  - {name: small, type: max_pool, kernel: 2, inputs: c0}\n"
    )
    found = errors(layers + f"  - {{name: t, type: mul, inputs: {inputs}}}\n")
    assert any(message in e and "(t): " in e for e in found), found


def test_mul_gates_match_torch_onnx_and_autograd():
    gates = (
        "  - {name: gap, type: global_avg_pool, inputs: c0}\n  - {name: flat, type: linear, units: 4}\n"
        "  - {name: column, type: avg_pool, kernel: 6, inputs: c0}\n"  # a 4x1x1 gate
    )
    graph = net(C0 + gates + "  - {name: t, type: mul, inputs: [column, c0, flat, c0]}\n")
    assert specc.check(graph).report.shapes["t"] == (4, 6, 6)
    onnx_matches_torch(graph)
    engines_agree(graph)


def test_scale_state_init_and_arithmetic():
    graph = net(
        C0 + "  - {name: t, type: scale}\n  - {type: flatten}\n  - {name: u, type: scale, init_value: 1.0e-6}\n"
    )
    model = specc_torch.build(graph)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items() if k[0] in "tu"} == {
        "t.weight": (4,),
        "u.weight": (144,),
    }
    assert model.get_parameter("t.weight").tolist() == [1.0] * 4 and model.get_parameter(
        "u.weight"
    ).tolist() == pytest.approx([1e-6] * 144)
    assert specc.check(graph).report.info("t").params == 4
    with torch.no_grad():
        model.get_parameter("t.weight").copy_(torch.tensor([1.0, -2.0, 0.5, 0.0]))
        x = torch.randn(1, 3, 6, 6)
        c0 = model.layer_output(x, "c0")
        torch.testing.assert_close(model.layer_output(x, "t"), c0 * torch.tensor([1.0, -2.0, 0.5, 0.0]).view(4, 1, 1))
    onnx_matches_torch(graph)


# -- maxout, log_softmax ---------------------------------------------------------------------------
def test_maxout_by_hand_and_refusal():
    graph = net("  - {type: flatten}\n  - {name: t, type: maxout, pieces: 2}\n", channels=4, size=1, classes=2, head="")
    x = torch.tensor([1.0, 5.0, 3.0, -2.0]).reshape(1, 4, 1, 1)
    with torch.no_grad():
        assert specc_torch.build(graph)(x).tolist() == [[5.0, 3.0]]
    [error] = errors(C0 + "  - {name: t, type: maxout, pieces: 3}\n")
    assert "(t): maxout of 3 pieces on 4 channels: 4 = 3*1 + 1 — expected channels divisible by 3" in error


def test_maxout_ties_share_the_signal():
    """After a ReLU many pieces tie at 0: autograd's amax splits the gradient between them,
    and so do both engines."""
    graph = net(C0.replace("leaky_relu, slope: 0.2", "relu") + "  - {name: t, type: maxout, pieces: 4}\n")
    for method in ("backprop", "guided"):
        engines_agree(graph, "fc", method)
    x = torch.tensor([[[[0.0]], [[0.0]], [[3.0]], [[3.0]]]], requires_grad=True)  # two ties
    tied = specc_torch.build(
        net("  - {type: flatten}\n  - {name: t, type: maxout, pieces: 2}\n", channels=4, size=1, classes=2, head="")
    )
    tied(x).sum().backward()
    assert x.grad is not None and x.grad.flatten().tolist() == [0.5, 0.5, 0.5, 0.5]


def test_log_softmax_output_is_logits():
    """Log-probabilities are logits: kept when logits are asked for, softmax(them) = the
    probabilities, and CrossEntropyLoss on them equals CrossEntropyLoss on the raw scores."""
    graph = net(C0 + HEAD + "  - {name: t, type: log_softmax}\n", head="")
    model = randomised(graph)
    assert isinstance(model, SpeccModule)
    x = torch.randn(3, 3, 6, 6)
    with torch.no_grad():
        raw = model.layer_output(x, "fc")
        out = model(x)
    torch.testing.assert_close(out, torch.log_softmax(raw, dim=1))
    labels = torch.tensor([0, 2, 1])
    torch.testing.assert_close(F.cross_entropy(out, labels), F.cross_entropy(raw, labels))
    probs = emit(graph, state_dict_numpy(model), output="probs")
    got = np.asarray(make_session(to_bytes(probs), CPU).run(None, {"input": x.numpy()})[0])
    np.testing.assert_allclose(got, torch.softmax(raw, dim=1).numpy(), rtol=1e-5, atol=1e-6)


# -- dropout: spatial ------------------------------------------------------------------------------
def test_spatial_dropout_drops_whole_channels():
    graph = net(C0 + "  - {name: t, type: dropout, rate: 0.5, spatial: true}\n")
    model = specc_torch.build(graph)
    assert (
        isinstance(model.get_submodule("t"), torch.nn.Dropout2d)
        and specc.check(graph).report.info("t").describe == "p=0.5 spatial"
    )
    model.train()
    torch.manual_seed(0)
    dropped = model.get_submodule("t")(torch.ones(8, 4, 6, 6))
    per_channel = dropped.flatten(2)
    assert torch.all(per_channel.amin(2) == per_channel.amax(2))  # each channel all 0 or all 2
    assert 0 < int((per_channel[:, :, 0] == 0).sum()) < 32
    assert not any(n.op_type == "Dropout" for n in emit(graph, state_dict_numpy(model)).graph.node)
    [error] = errors(C0 + "  - {type: flatten}\n  - {name: t, type: dropout, rate: 0.5, spatial: true}\n")
    assert "(t): spatial dropout needs a CxHxW feature map but gets a flat vector of 144 features" in error


# -- the generated standalone file -----------------------------------------------------------------
def test_generated_file_defines_its_helpers_and_is_bit_identical():
    layers = (
        C0 + "  - {name: broadcast_mul, type: scale}\n"  # a layer named like a helper the forward calls
        "  - {name: up, type: upsample, mode: bilinear, scale: 2}\n  - {type: pad, padding: 1, mode: reflect}\n"
        "  - {type: conv_transpose, filters: 4, kernel: 2, stride: 2, groups: 2}\n"
        "  - {name: gate, type: global_avg_pool, inputs: broadcast_mul}\n"
        "  - {name: t, type: mul, inputs: [broadcast_mul, gate]}\n  - {type: maxout, pieces: 2}\n"
    )
    graph = specc.load(f"name: layer_scale\ninput: {{channels: 3, size: 6}}\nclasses: 3\nlayers:\n{layers}{HEAD}")
    model = randomised(graph)
    source = generate(graph)
    assert "class LayerScale(nn.Module):" in source and "def broadcast_mul(" in source
    namespace: dict = {}
    exec(compile(source, "layer_scale.py", "exec"), namespace)
    standalone = namespace["LayerScaleNet"]()  # the spec's own class name is the helper's
    standalone.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(standalone.eval()(x), model(x))
    with pytest.raises(ValueError, match="taken by a helper"):
        generate(graph, "LayerScale")
