"""The activation family (`specc.ops_activations`) against outside oracles: torch.nn's own
modules for the values, hand formulas at the kinks, autograd through torch.nn for the
backward (under every method: these are not ReLUs), onnxruntime at the opsets with and without
the native ops; and the fused forms (`activation: gelu`, `activation: {type: elu, alpha: 0.5}`):
the same computation as the standalone layer, canonical YAML, located errors, the schema.
Expected values never come from specc itself.
"""

from __future__ import annotations

import math

import jsonschema
import numpy as np
import pytest
import torch
from torch import nn

import specc
import specc_torch
from specc.emit import to_yaml
from specc.errors import SpecError
from specc.schema import json_schema
from specc.spec import load_graph_text
from specc_explain_onnx import emit_explain
from specc_onnx import emit, to_bytes
from specc_onnx.runtime import make_session
from specc_onnx.verify import verify
from specc_torch.codegen import generate
from specc_torch.weights import state_dict_numpy
from specc_viz import explain

CPU = ["CPUExecutionProvider"]

# (type, parameters, the torch.nn module that is the oracle)
CASES = [
    ("sigmoid", {}, nn.Sigmoid()),
    ("tanh", {}, nn.Tanh()),
    ("relu6", {}, nn.ReLU6()),
    ("hardtanh", {}, nn.Hardtanh()),
    ("hardtanh", {"min_val": -0.5, "max_val": 3.0}, nn.Hardtanh(-0.5, 3.0)),
    ("elu", {}, nn.ELU()),
    ("elu", {"alpha": 0.5}, nn.ELU(alpha=0.5)),
    ("selu", {}, nn.SELU()),
    ("gelu", {}, nn.GELU()),
    ("gelu", {"approximate": "tanh"}, nn.GELU(approximate="tanh")),
    ("silu", {}, nn.SiLU()),
    ("mish", {}, nn.Mish()),
    ("hardswish", {}, nn.Hardswish()),
    ("hardsigmoid", {}, nn.Hardsigmoid()),
    ("softplus", {}, nn.Softplus()),
    ("softplus", {"beta": 2.0, "threshold": 3.0}, nn.Softplus(beta=2.0, threshold=3.0)),
]
IDS = [kind + "".join(f"-{k}={v}" for k, v in params.items()) for kind, params, _ in CASES]

# Edge points: 0, the kinks at ±3 and 6, the hardtanh/softplus switches, large values both ways.
POINTS = [-100.0, -20.0, -6.0, -3.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 7.0, 20.0, 25.0, 100.0]
N = len(POINTS)
HEAD = "name: t\ninput: {channels: 3, size: 8}\nclasses: 4\nlayers:\n"


def _flow(params: dict) -> str:
    return "".join(f", {k}: {v}" for k, v in params.items())


def _on_points(kind: str, params: dict) -> specc.Graph:
    """The activation alone on a vector of N values (the points), its output the network's."""
    text = f"name: p\ninput: {{channels: {N}, size: 1}}\nclasses: {N}\nlayers:\n  - {{type: flatten}}\n"
    return specc.load(text + f"  - {{name: t, type: {kind}{_flow(params)}}}\n")


def _points(batch: int = 3) -> torch.Tensor:
    """(batch, N, 1, 1): the points, then random values over a wide range."""
    rows = [torch.tensor(POINTS)] + [
        torch.randn(N, generator=torch.Generator().manual_seed(i)) * 5 for i in range(1, batch)
    ]
    return torch.stack(rows).view(batch, N, 1, 1)


# -- values ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "params", "module"), CASES, ids=IDS)
def test_values_are_torch_nn(kind, params, module):
    model = specc_torch.build(_on_points(kind, params)).eval()
    x = _points()
    with torch.no_grad():
        assert torch.equal(model(x), module(x.flatten(1)))  # the same torch function, bit for bit


HAND = {  # (type, parameters): [(x, y)] from the definitions
    ("sigmoid", ()): [(0.0, 0.5), (-100.0, 0.0), (100.0, 1.0), (2.0, 1 / (1 + math.exp(-2)))],
    ("tanh", ()): [(0.0, 0.0), (1.0, math.tanh(1.0)), (-100.0, -1.0)],
    ("relu6", ()): [(-3.0, 0.0), (0.0, 0.0), (3.0, 3.0), (6.0, 6.0), (7.0, 6.0)],
    ("hardtanh", (("min_val", -0.5), ("max_val", 3.0))): [(-6.0, -0.5), (0.0, 0.0), (2.0, 2.0), (6.0, 3.0)],
    ("elu", (("alpha", 0.5),)): [(-100.0, -0.5), (-1.0, 0.5 * (math.exp(-1) - 1)), (0.0, 0.0), (3.0, 3.0)],
    ("selu", ()): [(-100.0, -1.0507009873554805 * 1.6732632423543772), (0.0, 0.0), (1.0, 1.0507009873554805)],
    ("gelu", ()): [(0.0, 0.0), (1.0, 0.5 * (1 + math.erf(1 / math.sqrt(2)))), (-100.0, 0.0), (6.0, 6.0)],
    ("gelu", (("approximate", "tanh"),)): [(0.0, 0.0), (1.0, 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715)))],
    ("silu", ()): [(0.0, 0.0), (3.0, 3 / (1 + math.exp(-3))), (-100.0, 0.0)],
    ("mish", ()): [(0.0, 0.0), (1.0, math.tanh(math.log1p(math.e))), (-100.0, 0.0)],
    ("hardswish", ()): [(-6.0, 0.0), (-3.0, 0.0), (0.0, 0.0), (1.0, 4 / 6), (3.0, 3.0), (6.0, 6.0)],
    # PyTorch's hard sigmoid: x/6 + 1/2 clipped to [0, 1] (not Keras' x/5 + 1/2, nor ONNX's default 0.2x)
    ("hardsigmoid", ()): [(-6.0, 0.0), (-3.0, 0.0), (0.0, 0.5), (1.5, 0.75), (3.0, 1.0), (6.0, 1.0)],
    ("softplus", (("beta", 2.0), ("threshold", 3.0))): [
        (0.0, math.log(2) / 2),
        (1.0, math.log1p(math.exp(2)) / 2),
        (2.0, 2.0),
    ],
}


@pytest.mark.parametrize(("key", "pairs"), HAND.items(), ids=[k for k, _ in HAND])
def test_values_by_hand(key, pairs):
    kind, params = key
    xs = [x for x, _ in pairs]
    graph = specc.load(
        f"name: h\ninput: {{channels: {len(xs)}, size: 1}}\nclasses: {len(xs)}\nlayers:\n  - {{type: flatten}}\n"
        f"  - {{name: t, type: {kind}{_flow(dict(params))}}}\n"
    )
    with torch.no_grad():
        got = specc_torch.build(graph)(torch.tensor(xs).view(1, -1, 1, 1))[0]
    torch.testing.assert_close(got, torch.tensor([y for _, y in pairs]), rtol=1e-6, atol=1e-6)


# -- fused == standalone ---------------------------------------------------------------------
def _mapping(kind: str, params: dict) -> str:
    return f"{{type: {kind}{_flow(params)}}}" if params else kind


@pytest.mark.parametrize(("kind", "params", "module"), CASES, ids=IDS)
def test_fused_is_the_standalone_layer(kind, params, module):
    act = _mapping(kind, params)
    fused = specc.load(
        HEAD + f"  - {{name: c, type: conv, filters: 5, kernel: 3, activation: {act}}}\n  - {{type: flatten}}\n"
        f"  - {{name: fc, type: linear, units: 4, activation: {act}}}\n"
    )
    alone = specc.load(
        HEAD + f"  - {{name: c, type: conv, filters: 5, kernel: 3}}\n  - {{name: a, type: {kind}{_flow(params)}}}\n"
        f"  - {{type: flatten}}\n  - {{name: fc, type: linear, units: 4}}\n  - {{name: b, type: {kind}{_flow(params)}}}\n"
    )
    assert fused.node("c").op.activation_op() == alone.node("a").op == fused.node("fc").op.activation_op()
    model_fused, model_alone = specc_torch.build(fused, seed=1).eval(), specc_torch.build(alone, seed=1).eval()
    assert model_fused.state_dict().keys() == model_alone.state_dict().keys()
    model_alone.load_state_dict(model_fused.state_dict())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        want = module(model_fused.fc(torch.flatten(module(model_fused.c(x)), 1)))  # torch.nn around the weights
        assert torch.equal(model_fused(x), want)
        assert torch.equal(model_alone(x), want)
    # the generated standalone file computes the same bits
    namespace: dict = {}
    exec(compile(generate(fused, "Net"), "net.py", "exec"), namespace)
    standalone = namespace["Net"]().eval()
    standalone.load_state_dict(model_fused.state_dict())
    with torch.no_grad():
        assert torch.equal(standalone(x), want)


# -- ONNX ------------------------------------------------------------------------------------
NATIVE = {"gelu": ("Gelu", 20), "mish": ("Mish", 18), "hardswish": ("HardSwish", 14)}


@pytest.mark.parametrize("opset", [13, 14, 17, 18, 20])
@pytest.mark.parametrize(("kind", "params", "module"), CASES, ids=IDS)
def test_onnx_matches_torch_nn(kind, params, module, opset):
    graph = _on_points(kind, params)
    model = emit(graph, {}, opset=opset)
    data = to_bytes(model)
    verify(model, graph, data)  # onnx's full checker and strict shape inference == specc's shapes
    x = _points(4)
    got = make_session(data, CPU).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = module(x.flatten(1)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    op_types = {node.op_type for node in model.graph.node}
    if kind in NATIVE:
        native, since = NATIVE[kind]
        assert (native in op_types) == (opset >= since)


# -- backward: the plain derivative under every method ---------------------------------------
@pytest.mark.parametrize("method", ["backprop", "deconvnet", "guided"])
@pytest.mark.parametrize(("kind", "params", "module"), CASES, ids=IDS)
def test_backward_is_the_derivative(kind, params, module, method):
    """Unit k of the output seeded with 1: the map is dy_k/dx, the derivative at point k on the
    diagonal — autograd through torch.nn, at the kinks too; replay, autograd of the built model
    and the ONNX explain model all give it, whatever the method."""
    graph = _on_points(kind, params)
    model = specc_torch.build(graph).eval()
    x = _points(1)
    points = x.flatten(1).clone().requires_grad_(True)
    (derivative,) = torch.autograd.grad(module(points).sum(), points)
    want = torch.diag(derivative[0])  # (unit, input)
    for engine in ("replay", "autograd"):
        got = explain(model, x, layer="t", units=list(range(N)), method=method, engine=engine)  # (1, U, N, 1, 1)
        torch.testing.assert_close(got[0, :, :, 0, 0], want, rtol=1e-5, atol=1e-6)
    onnx_model = emit_explain(graph, {}, method=method, layer="t")
    inputs = {"input": x.expand(N, -1, -1, -1).numpy(), "unit_mask": np.eye(N, dtype=np.float32)}
    got = make_session(to_bytes(onnx_model), CPU).run(["reconstruction"], inputs)[0]
    np.testing.assert_allclose(got[:, :, 0, 0], want.numpy(), rtol=1e-5, atol=1e-6)


# -- the mapping form ------------------------------------------------------------------------
def _graph(layers: str) -> specc.Graph:
    return load_graph_text(HEAD + layers, "spec.yaml")


def test_mapping_form_canonical_yaml():
    graph = _graph(
        "  - {name: c1, type: conv, filters: 4, kernel: 3, activation: {type: elu, alpha: 0.5}}\n"
        "  - {name: c2, type: conv, filters: 4, kernel: 3, activation: {type: elu, alpha: 1.0}}\n"
        "  - {name: c3, type: conv, filters: 4, kernel: 1, activation: {type: leaky_relu, slope: 0.3}}\n"
        "  - {name: c4, type: conv, filters: 4, kernel: 1, activation: leaky_relu, slope: 0.3}\n"
        "  - {name: c5, type: conv, filters: 4, kernel: 1, activation: {type: gelu, approximate: tanh}}\n"
        "  - {type: global_avg_pool}\n"
        "  - {name: fc, type: linear, units: 4, activation: {type: hardtanh, min_val: -2}}\n"
    )
    text = to_yaml(graph)
    lines = text.splitlines()
    assert "  - {name: c1, type: conv, filters: 4, kernel: 3, activation: {type: elu, alpha: 0.5}}" in lines
    assert "  - {name: c2, type: conv, filters: 4, kernel: 3, activation: elu}" in lines  # defaults: the name
    assert "  - {name: c3, type: conv, filters: 4, kernel: 1, activation: {type: leaky_relu, slope: 0.3}}" in lines
    assert "  - {name: c4, type: conv, filters: 4, kernel: 1, activation: leaky_relu, slope: 0.3}" in lines
    assert "  - {name: fc, type: linear, units: 4, activation: {type: hardtanh, min_val: -2.0}}" in lines
    again = load_graph_text(text, "<fmt>")
    assert again == graph and to_yaml(again) == text
    # the activation each layer applies, with its parameters from the mapping or the layer
    assert graph.node("c1").op.activation_op() == specc.ops.OPS["elu"](alpha=0.5)
    assert graph.node("c2").op.activation == "elu"
    assert graph.node("c3").op.activation_op().slope == graph.node("c4").op.activation_op().slope == 0.3
    summary = {info.name: info.describe for info in specc.check(graph).report.layers}
    assert summary["c1"] == "3x3 valid elu(alpha=0.5)"
    assert summary["c5"] == "1x1 valid gelu(approximate=tanh)"
    assert summary["fc"] == "hardtanh(min_val=-2.0)"


def test_mapping_form_in_defaults_round_trips():
    text = (
        HEAD.replace("layers:\n", "defaults:\n  conv: {kernel: 1, activation: {type: softplus, beta: 2}}\nlayers:\n")
        + "  - {name: c1, type: conv, filters: 4}\n  - {name: c2, type: conv, filters: 4, activation: none}\n"
        + "  - {type: global_avg_pool}\n"
    )
    graph = load_graph_text(text, "spec.yaml")
    assert graph.node("c1").op.activation_op() == specc.ops.OPS["softplus"](beta=2.0)
    again = load_graph_text(to_yaml(graph), "<fmt>")
    assert again == graph
    assert "  - {name: c1, type: conv, filters: 4}" in to_yaml(graph).splitlines()


ERRORS = {
    "bad parameter value": (
        "  - {type: conv, filters: 4, kernel: 3, activation: {type: elu, alpha: x}}\n",
        "spec.yaml:5:72: layers[0].activation.alpha (conv1): alpha = 'x': input should be a valid number,"
        " unable to parse string as a number — expected a number >= 0 (elu(x) tends to -alpha for very negative x)",
    ),
    "parameter out of range": (
        "  - {type: linear, units: 4, activation: {type: softplus, beta: 0}}\n",
        "spec.yaml:5:65: layers[0].activation.beta (fc1): beta = 0: input should be greater than 0"
        " — expected the sharpness, a number > 0",
    ),
    "unknown parameter": (
        "  - {type: conv, filters: 4, kernel: 3, activation: {type: hardtanh, min: 0}}\n",
        "spec.yaml:5:70: layers[0].activation (conv1): unknown key 'min' for hardtanh — did you mean 'min_val'?",
    ),
    "unknown activation": (
        "  - {type: conv, filters: 4, kernel: 3, activation: {type: swish}}\n",
        "spec.yaml:5:53: layers[0] (conv1): activation = {'type': 'swish'} is not valid — expected relu, leaky_relu,"
        " sigmoid, tanh, relu6, hardtanh, elu, selu, gelu, silu, mish, hardswish, hardsigmoid, softplus or none,"
        " or a mapping {type: <one of these>, <its parameters>} such as {type: elu, alpha: 0.5}",
    ),
    "mapping without a type": (
        "  - {type: conv, filters: 4, kernel: 3, activation: {alpha: 0.5}}\n",
        "spec.yaml:5:53: layers[0] (conv1): activation = {'alpha': 0.5} is not valid — expected relu, leaky_relu,"
        " sigmoid, tanh, relu6, hardtanh, elu, selu, gelu, silu, mish, hardswish, hardsigmoid, softplus or none,"
        " or a mapping {type: <one of these>, <its parameters>} such as {type: elu, alpha: 0.5}",
    ),
    "a layer with weights is no activation": (
        "  - {type: conv, filters: 4, kernel: 3, activation: prelu}\n",
        "spec.yaml:5:53: layers[0] (conv1): activation = 'prelu' is not valid — expected relu, leaky_relu,"
        " sigmoid, tanh, relu6, hardtanh, elu, selu, gelu, silu, mish, hardswish, hardsigmoid, softplus or none,"
        " or a mapping {type: <one of these>, <its parameters>} such as {type: elu, alpha: 0.5}",
    ),
    "bounds in the wrong order": (
        "  - {type: hardtanh, min_val: 2, max_val: 1}\n",
        "spec.yaml:5:43: layers[0] (hardtanh1): max_val = 1: input should be greater than min_val (2.0)"
        " — expected the upper bound, a number above min_val",
    ),
    "a lower bound above the default upper one": (
        "  - {type: conv, filters: 4, kernel: 3, activation: {type: hardtanh, min_val: 2}}\n",
        "spec.yaml:5:53: layers[0].activation.max_val (conv1): max_val = 1.0 (the default): input should be"
        " greater than min_val (2.0) — expected the upper bound, a number above min_val",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_mapping_form_errors(case):
    layers, message = ERRORS[case]
    with pytest.raises(SpecError) as caught:
        _graph(layers + "  - {type: global_avg_pool}\n")
    assert [d.format() for d in caught.value.diagnostics] == [message]


def test_schema_takes_the_mapping_form():
    schema = json_schema()
    good = {
        "name": "t",
        "input": {"channels": 3, "size": 8},
        "classes": 4,
        "defaults": {"linear": {"activation": {"type": "gelu", "approximate": "tanh"}}},
        "layers": [
            {"type": "conv", "filters": 4, "kernel": 3, "activation": {"type": "elu", "alpha": 0.5}},
            {"type": "conv", "filters": 4, "kernel": 3, "activation": "mish"},
            {"type": "softplus", "beta": 2},
        ],
    }
    jsonschema.validate(good, schema)
    for bad in ({"type": "elu", "beta": 1}, {"alpha": 1}, {"type": "swish"}, "swish"):
        good["layers"][0]["activation"] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(good, schema)


# -- traits: lint, initialisation, transforms ------------------------------------------------
def test_lint_warns_of_relu6_on_the_scores_only():
    tail = "  - {type: global_avg_pool}\n  - {type: linear, units: 4, activation: %s}\n"
    for activation, warned in (("relu6", True), ("{type: elu, alpha: 0.5}", False), ("sigmoid", False)):
        warnings = specc.check(HEAD + "  - {type: conv, filters: 4, kernel: 3}\n" + tail % activation).warnings
        assert any("ReLU on the final class scores" in w.message for w in warnings) == warned, activation
    standalone = specc.check(
        HEAD + "  - {type: conv, filters: 4, kernel: 3}\n  - {type: global_avg_pool}\n  - {type: relu6}\n"
    )
    assert any("ReLU on the final class scores" in w.message for w in standalone.warnings)


def test_he_init_keeps_the_leaky_gain_only():
    graph = _graph(
        "  - {name: a, type: conv, filters: 4, kernel: 3, activation: leaky_relu, slope: 0.2}\n"
        "  - {name: b, type: conv, filters: 4, kernel: 3, activation: {type: leaky_relu, slope: 0.3}}\n"
        "  - {name: c, type: conv, filters: 4, kernel: 1, activation: gelu}\n"
        "  - {name: d, type: conv, filters: 4, kernel: 1, activation: {type: elu, alpha: 0.5}}\n"
        "  - {type: global_avg_pool}\n"
    )
    rules = {name: graph.node(name).op.init_rule() for name in "abcd"}
    assert rules == {"a": ("he", {"slope": 0.2}), "b": ("he", {"slope": 0.3}), "c": ("he", {}), "d": ("he", {})}


def test_fc_to_conv_carries_a_mapping_activation():
    text = HEAD + (
        "  - {type: conv, filters: 16, kernel: 8, activation: relu}\n  - {type: flatten}\n"
        "  - {type: linear, units: 32, activation: {type: elu, alpha: 0.5}}\n  - {type: linear, units: 4}\n"
    )
    result = specc.transform(text, fc_to_conv=True)
    assert result.graph.node("fc1").type == "conv"
    assert result.graph.node("fc1").op.activation_op() == specc.ops.OPS["elu"](alpha=0.5)


def test_onnx_standalone_and_fused_weights_agree():
    """The ONNX model of a fused net equals torch's, from the state_dict (no torch in emit)."""
    graph = _graph(
        "  - {name: c, type: conv, filters: 4, kernel: 3, activation: {type: softplus, beta: 2, threshold: 1}}\n"
        "  - {type: global_avg_pool}\n  - {name: fc, type: linear, units: 4, activation: {type: gelu, approximate: tanh}}\n"
    )
    model = specc_torch.build(graph, seed=2).eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x).numpy()
    for opset in (13, 17, 20):
        session = make_session(to_bytes(emit(graph, state_dict_numpy(model), opset=opset)), CPU)
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], want, rtol=1e-5, atol=1e-5)
