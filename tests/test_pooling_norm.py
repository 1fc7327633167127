"""Pooling and normalisation beyond the paper's layers (issue #11): adaptive average and max
pooling, global max pooling, LP pooling, local response, group, instance and layer norm.

Oracles from outside specc: hand arithmetic on tiny maps, torch.nn's own modules and
functions, onnx's checker and strict shape inference with onnxruntime, autograd. The op-table
checks every op passes (state_dict, parity, replay == autograd == ONNX explain) run on one
example each in tests/test_op_table.py; the cases here cover the other forms (uneven and
uniform adaptive windows, 1 -> 7, ceil mode, p = max, even LRN windows, flat inputs, opsets).
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from test_op_table import randomised as randomised_module

import specc
import specc_torch
from specc.errors import SpecError
from specc.ops import OPS
from specc.ops_pooling import adaptive_window, adaptive_windows, uniform_window
from specc_onnx import emit, to_bytes, verify
from specc_onnx.runtime import make_session
from specc_torch import SpeccModule
from specc_torch.codegen import generate
from specc_torch.weights import state_dict_numpy

CPU = ["CPUExecutionProvider"]
NEW_KINDS = (
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "global_max_pool",
    "lp_pool",
    "local_response_norm",
    "group_norm",
    "instance_norm",
    "layer_norm",
)


def net_text(layer: str, size=6, channels=3, act="leaky_relu", flat=False) -> str:
    """conv -> the layer `t` -> (flatten) -> fc: a 3-class network on a channels x size map."""
    head = "" if "global_max_pool" in layer or flat else "  - {type: flatten}\n"
    pre = "  - {type: flatten}\n" if flat else ""
    return (
        f"name: n\ninput: {{channels: {channels}, size: {size}}}\nclasses: 3\nlayers:\n"
        f"  - {{name: c0, type: conv, filters: 4, kernel: 1, activation: {act}, slope: 0.2}}\n"
        f"{pre}  - {{name: t, {layer}}}\n{head}  - {{name: fc, type: linear, units: 3}}\n"
    )


def net(layer: str, **kwargs) -> specc.Graph:
    return specc.load(net_text(layer, **kwargs))


def randomised(graph: specc.Graph) -> SpeccModule:
    return cast(SpeccModule, randomised_module(graph))


def ort(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], output: str | None = None) -> np.ndarray:
    """The first (or the named) output of `proto` in onnxruntime."""
    return np.asarray(make_session(to_bytes(proto), CPU).run(None if output is None else [output], feeds)[0])


def onnx_run(graph, model, x, opset=17) -> np.ndarray:
    proto = emit(graph, state_dict_numpy(model), opset=opset)
    verify(proto, graph)  # checker (full) and strict shape inference == specc's shapes
    return ort(proto, {"input": x.numpy()})


def node_types(graph, opset=17) -> set[str]:
    proto = emit(graph, state_dict_numpy(specc_torch.build(graph)), opset=opset)
    return {n.op_type for n in proto.graph.node if n.name.startswith("t")}


# -- the declarations ------------------------------------------------------------------------
def test_none_of_the_new_norms_claims_to_fold():
    # `normalizes` promises an inference-time affine map fold_batch_norm may fold: not these.
    assert OPS["batch_norm"].normalizes
    assert not any(OPS[k].normalizes for k in NEW_KINDS)
    result = specc.transform(net("type: group_norm, groups: 2"), fold_batch_norm=True)
    assert "group_norm" in {n.type for n in result.graph.nodes}


@pytest.mark.parametrize(
    ("size", "out", "windows", "plain"),
    [
        (5, 3, [(0, 2), (1, 4), (3, 5)], None),  # uneven and overlapping
        (1, 7, [(0, 1)] * 7, None),  # VGG's AdaptiveAvgPool2d(7) on 1x1: replicates
        (7, 7, [(i, i + 1) for i in range(7)], (1, 1)),  # ... on 7x7: the identity
        (13, 6, [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13)], (3, 2)),  # AlexNet's 3x3/2 pool
    ],
)
def test_adaptive_windows_by_hand(size, out, windows, plain):
    assert adaptive_windows(size, out) == windows
    assert uniform_window(size, out) == plain


def test_adaptive_receptive_window_holds_every_window():
    # window() gives (kernel, stride): cell i's window must lie in [i*stride, i*stride + kernel).
    for size in range(1, 14):
        for out in range(1, 14):
            kernel, stride = adaptive_window(size, out)
            for i, (start, end) in enumerate(adaptive_windows(size, out)):
                assert i * stride <= start and end <= i * stride + kernel
            if uniform_window(size, out):
                assert (kernel, stride) == uniform_window(size, out)


def test_summary_numbers():
    report = specc.check(net("type: group_norm, groups: 2")).report
    assert report.info("t").params == 8  # weight and bias, (4,) each
    report = specc.check(net("type: adaptive_avg_pool, output: 3", size=13)).report
    assert report.info("t").shape == (4, 3, 3) and report.info("t").rf == (5, 5) and report.info("t").jump == (4, 4)
    assert specc.check(net("type: layer_norm, affine: false")).report.info("t").params == 0


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("type: group_norm, groups: 3", "groups=3 must divide the 4 channels (4 / 3 = 1.33)"),
        ("type: lp_pool, p: 0.5, kernel: 2", "p must be a number >= 1, or max"),
        ("type: lp_pool, p: 2, kernel: 2, padding: 1", "valid (LP pooling has no padding)"),
        ("type: lp_pool, p: 2, kernel: 7", "7x7 lp_pool is larger than its 6x6 input"),
        ("type: adaptive_max_pool, output: 0", "a positive integer or [height, width]"),
        ("type: local_response_norm", "size"),
    ],
)
def test_refusals_are_located_with_the_arithmetic(layer, message):
    with pytest.raises(SpecError) as info:
        specc.check(net_text(layer))
    text = str(info.value)
    assert message in text and "layers[1] (t)" in text


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("type: instance_norm", "instance_norm needs a CxHxW feature map"),
        ("type: local_response_norm, size: 3", "local_response_norm needs a CxHxW feature map"),
    ],
)
def test_map_only_layers_refuse_flat_vectors(layer, message):
    with pytest.raises(SpecError, match=message):
        specc.check(net_text(layer, flat=True))


def test_p_spellings_and_canonical_yaml():
    graph = net("type: lp_pool, p: inf, kernel: 2")
    assert graph.node("t").op.params()["p"] == "max"
    text = specc.fmt(graph)
    assert "p: max" in text and specc.load(text).node("t").op == graph.node("t").op
    with pytest.raises(SpecError):
        specc.check(net_text("type: lp_pool, p: .inf, kernel: 2"))  # non-finite numbers are refused by the loader


# -- forward: hand arithmetic, torch.nn, ONNX ------------------------------------------------
def grid() -> torch.Tensor:
    return torch.arange(25.0).reshape(1, 1, 5, 5)  # x[i, j] = 5i + j


def one_layer(layer: str, shape=(1, 5, 5)) -> tuple[specc.Graph, SpeccModule]:
    """input -> `t`, whose output the model returns (a 1-class head on the side keeps the spec valid)."""
    c, h, w = shape
    graph = specc.load(
        f"name: one\ninput: {{channels: {c}, size: [{h}, {w}]}}\nclasses: 1\nlayers:\n  - {{name: t, {layer}}}\n"
        "  - {type: global_avg_pool, inputs: t}\n  - {type: linear, units: 1}\n"
    )
    return graph, specc_torch.build(graph).eval()


@pytest.mark.parametrize(
    ("layer", "want"),
    [
        # rows/columns pooled over [0, 2), [1, 4), [3, 5): means 0.5, 2, 3.5; maxima 1, 3, 4
        ("type: adaptive_avg_pool, output: 3", [[3.0, 4.5, 6.0], [10.5, 12.0, 13.5], [18.0, 19.5, 21.0]]),
        ("type: adaptive_max_pool, output: 3", [[6.0, 8.0, 9.0], [16.0, 18.0, 19.0], [21.0, 23.0, 24.0]]),
    ],
)
def test_adaptive_pools_by_hand(layer, want):
    graph, model = one_layer(layer)
    out = model.layer_output(grid(), "t")
    torch.testing.assert_close(out, torch.tensor([[want]]))
    proto = _with_output(emit(graph, state_dict_numpy(model)), "t")
    assert {"MatMul", "Gather"} & {n.op_type for n in proto.graph.node}  # uneven: no plain pool
    got = ort(proto, {"input": grid().numpy()}, "t")
    np.testing.assert_allclose(got, [[want]], rtol=1e-6)


@pytest.mark.parametrize("kind", ["adaptive_avg_pool", "adaptive_max_pool"])
def test_vgg_head_on_7x7_and_1x1(kind):
    x = torch.randn(2, 3, 7, 7)
    for size, ops in ((7, {"Identity"}), (1, {"MatMul"} if "avg" in kind else {"Gather"})):
        graph = net(f"type: {kind}, output: 7", size=size)
        model = randomised(graph)
        xs = x[:, :, :size, :size]
        before = model.layer_output(xs, "c0")
        assert torch.equal(model.layer_output(xs, "t"), before.expand(2, 4, 7, 7))  # identity / replicated
        assert ops <= node_types(graph)
        np.testing.assert_allclose(onnx_run(graph, model, xs), model(xs).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_uniform_adaptive_windows_are_plain_pools_in_onnx():
    assert "AveragePool" in node_types(net("type: adaptive_avg_pool, output: 6", size=13))
    assert "MaxPool" in node_types(net("type: adaptive_max_pool, output: [3, 2]", size=6))


@pytest.mark.parametrize(
    ("p", "x", "want"),
    [
        (2, [[3.0, 4.0], [0.0, 0.0]], 5.0),  # sqrt(9 + 16)
        (1, [[3.0, -4.0], [2.0, 0.0]], 1.0),  # a sum
        ("max", [[-5.0, 4.0], [0.0, 1.0]], 5.0),  # the largest |x| (p -> infinity)
    ],
)
def test_lp_pool_by_hand(p, x, want):
    graph, model = one_layer(f"type: lp_pool, p: {p}, kernel: 2", shape=(1, 2, 2))
    inputs = torch.tensor([[x]])
    assert model.layer_output(inputs, "t").item() == pytest.approx(want, rel=1e-6)
    oracle = torch.nn.LPPool2d(float("inf") if p == "max" else p, 2)  # torch.nn's own module
    assert oracle(inputs).item() == pytest.approx(want, rel=1e-6)


def test_lp_pool_ceil_window_is_scaled_as_torch_does():
    # 3x3, kernel 2, stride 2, ceil: the last window covers 1 pixel; PyTorch averages x^p over
    # it and multiplies by the full window (4): (4 * 2^2)^(1/2) = 4, not |2|.
    graph, model = one_layer("type: lp_pool, p: 2, kernel: 2, ceil_mode: true", shape=(1, 3, 3))
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 2, 2] = 2.0
    out = model.layer_output(x, "t")
    assert out.shape == (1, 1, 2, 2) and out[0, 0, 1, 1].item() == pytest.approx(4.0)
    torch.testing.assert_close(out, torch.nn.LPPool2d(2, 2, ceil_mode=True)(x))


@pytest.mark.parametrize(
    ("size", "want"),
    [
        # x = [1, 2] at one position, alpha = beta = k = 1. size 2: windows [c-1, c] -> sums 1, 5;
        # size 3: [c-1, c+1] -> 5, 5. y_c = x_c / (1 + sum / size).
        (2, [1 / 1.5, 2 / 3.5]),
        (3, [1 / (1 + 5 / 3), 2 / (1 + 5 / 3)]),
    ],
)
def test_local_response_norm_by_hand(size, want):
    graph, model = one_layer(f"type: local_response_norm, size: {size}, alpha: 1, beta: 1, k: 1", shape=(2, 1, 1))
    x = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)
    torch.testing.assert_close(model.layer_output(x, "t").flatten(), torch.tensor(want))
    proto = emit(graph, state_dict_numpy(model))
    got = ort(_with_output(proto, "t"), {"input": x.numpy()}, "t")
    np.testing.assert_allclose(got.flatten(), want, rtol=1e-6)
    assert ("LRN" in {n.op_type for n in proto.graph.node}) == (size % 2 == 1)  # even: decomposed


def _with_output(proto: onnx.ModelProto, value: str) -> onnx.ModelProto:
    proto.graph.output.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, None))
    return proto


def _normalised(x: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    """The textbook formula: (x - mean) / sqrt(biased var + eps) over `dims`."""
    mean = x.mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim=dims, unbiased=False, keepdim=True) + eps)


def test_norms_against_the_formula_and_torch_nn():
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    cases = {
        "type: group_norm, groups: 2, affine: false": _normalised(x.reshape(2, 2, -1), (2,), 1e-5).reshape(x.shape),
        "type: instance_norm": _normalised(x, (2, 3), 1e-5),
        "type: layer_norm, affine: false": _normalised(x, (1,), 1e-5),  # over channels, per position
    }
    for layer, want in cases.items():
        _, model = one_layer(layer, shape=(4, 3, 5))
        torch.testing.assert_close(model.layer_output(x, "t"), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(  # torchvision's ConvNeXt LayerNorm2d: LayerNorm on the channels-last view
        one_layer("type: layer_norm", shape=(4, 3, 5))[1].layer_output(x, "t"),
        F.layer_norm(x.permute(0, 2, 3, 1), (4,)).permute(0, 3, 1, 2),
    )
    model = specc_torch.build(net("type: layer_norm", flat=True, size=2))  # on a flat vector: over features
    x = torch.randn(3, 3, 2, 2)
    features = model.layer_output(x, "flatten1")  # (3, 16)
    torch.testing.assert_close(model.layer_output(x, "t"), torch.nn.LayerNorm(16)(features))


FORWARD_CASES = [
    ("type: adaptive_avg_pool, output: [2, 4]", 6),
    ("type: adaptive_max_pool, output: 3", 5),
    ("type: adaptive_max_pool, output: 7", 2),
    ("type: global_max_pool", 5),
    ("type: lp_pool, p: 2, kernel: 3, stride: 2, ceil_mode: true", 6),
    ("type: lp_pool, p: max, kernel: 3, stride: 2, ceil_mode: true", 6),
    ("type: lp_pool, p: 3, kernel: [2, 3], stride: 1", 5),
    ("type: local_response_norm, size: 4, alpha: 0.3, beta: 0.6, k: 2", 4),
    ("type: group_norm, groups: 4, affine: false, eps: 0.01", 4),
    ("type: instance_norm, affine: true", 4),
    ("type: layer_norm", 4),
    ("type: layer_norm, affine: false", 4),
]


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
@pytest.mark.parametrize(("layer", "size"), FORWARD_CASES)
def test_onnx_matches_torch_at_every_opset(layer, size, opset):
    graph = net(layer, size=size, act="relu" if "p: 3" in layer else "leaky_relu")
    model = randomised(graph)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(onnx_run(graph, model, x, opset), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_layer_norm_is_layernormalization_from_opset_17():
    graph = net("type: layer_norm")
    assert "LayerNormalization" in node_types(graph, 17)
    assert "LayerNormalization" not in node_types(graph, 13) and "ReduceMean" in node_types(graph, 13)


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("layer", ["type: group_norm, groups: 2", "type: layer_norm"])
def test_norms_of_flat_vectors_in_onnx(layer, opset):
    flat = net(layer, flat=True, size=2)  # (N, 16): groups of features / all features
    model = randomised(flat)
    x = torch.randn(2, 3, 2, 2)
    np.testing.assert_allclose(onnx_run(flat, model, x, opset), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_standalone_code_is_bit_identical():
    layers = [
        "type: adaptive_avg_pool, output: [5, 4]",
        "type: lp_pool, p: max, kernel: 2, stride: 1",
        "type: local_response_norm, size: 2",
        "type: group_norm, groups: 2",
        "type: instance_norm, affine: true",
        "type: layer_norm",
        "type: adaptive_max_pool, output: 3",
        "type: lp_pool, p: 2, kernel: 2, ceil_mode: true",
        "type: global_max_pool",
    ]
    text = "name: every\ninput: {channels: 3, size: 6}\nclasses: 3\nlayers:\n"
    text += "  - {type: conv, filters: 4, kernel: 1}\n" + "".join(f"  - {{{layer}}}\n" for layer in layers)
    graph = specc.load(text + "  - {type: linear, units: 3}\n")
    model = randomised(graph)
    namespace: dict = {}
    exec(compile(generate(graph, "Every"), "every.py", "exec"), namespace)
    standalone = namespace["Every"]().eval()
    standalone.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(standalone(x), model(x))


# -- --replace-pooling ---------------------------------------------------------------------
POOLS = """name: pools
input: {channels: 3, size: 14}
classes: 10
layers:
  - {name: c1, type: conv, filters: 8, kernel: 3, padding: same, activation: relu}
  - {name: lp1, type: lp_pool, p: 2, kernel: 2}
  - {name: c2, type: conv, filters: 8, kernel: 3, padding: same, activation: relu}
  - {name: ap1, type: adaptive_max_pool, output: 5}
  - {name: ap2, type: adaptive_avg_pool, output: 5}
  - {name: ap3, type: adaptive_avg_pool, output: 1}
  - {name: gmp, type: global_max_pool}
  - {name: fc, type: linear, units: 10}
"""


def test_replace_pooling_refuses_adaptive_pools_with_located_reasons():
    with pytest.raises(SpecError) as info:
        specc.transform(POOLS, replace_pooling="conv", pool_types="max,lp")
    lines = str(info.value).splitlines()
    assert len(lines) == 3  # ap1, ap2, ap3; lp1 is rewritten, the global pool is a head
    assert "layers[3] (ap1)" in lines[0] and "from 7x7 to 5x5 its windows are uneven" in lines[0]
    assert "layers[4] (ap2)" in lines[1] and "on its 5x5 input it is the identity: remove it" in lines[1]
    assert "layers[5] (ap3)" in lines[2] and "on its 5x5 input it is an avg_pool with kernel 5, stride 5" in lines[2]
    with pytest.raises(SpecError, match="it is a max_pool with kernel 3, stride 2"):
        specc.transform(POOLS.replace("output: 5}", "output: 3}", 1), replace_pooling="conv", pool_types="lp")
    with pytest.raises(SpecError, match="lp1 is an lp_pool, and --pool-types is max — add lp to --pool-types"):
        specc.transform(POOLS, replace_pooling="conv")


@pytest.mark.parametrize("mode", ["conv", "strided", "convpool"])
def test_replace_pooling_rewrites_lp_pools(mode):
    result = specc.transform(POOLS, replace_pooling=mode, pool_types="lp", skip_unsupported=True)
    types = [n.type for n in result.graph.nodes]
    assert ("lp_pool" in types) == (mode == "convpool")  # convpool keeps the pool
    report = specc.check(result.graph).report
    assert report.shapes["c2"] == (8, 7, 7)  # the rewrite keeps the downsampling
    if mode == "conv":
        conv = result.graph.node("lp1_conv")
        assert (conv.op.kernel, conv.op.stride, conv.op.filters) == (2, 2, 8)
    assert math.prod(report.output_shape) == 10
