"""Activation patterns: the inverse of `specc_onnx.ops_activations` (and of `relu`,
`leaky_relu`, `prelu` in `specc_onnx.ops`). Each ONNX activation node (or the two-node
forms x · Sigmoid(x) = silu and x · HardSigmoid(x) = hardswish) becomes a standalone
activation layer, or the `activation:` of the conv/linear before it (`fuse_activation`)."""

from __future__ import annotations

import math
import re

from specc.ops import FUSABLE
from specc_onnx.importer.match import Match, NoMatch, Pattern, Result, const_input, only_reader, scalar
from specc_onnx.importer.patterns_decomposed import gelu_tanh, softplus_scaled
from specc_onnx.importer.view import ModelView, OnnxNode
from specc_onnx.ops_activations import SELU_ALPHA, SELU_SCALE

HARD_SIGMOID = (1 / 6, 0.5)  # PyTorch's slope and offset (ONNX's default alpha is 0.2)
TOLERANCE = 1e-6


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _times_input(view: ModelView, node: OnnxNode) -> OnnxNode | None:
    """The Mul that multiplies `node`'s output by `node`'s own input (x · f(x)), if that Mul is
    the only reader of f(x)."""
    reader = only_reader(view, node.output)
    if reader is None or reader.op_type != "Mul":
        return None
    return reader if sorted(reader.inputs) == sorted((node.inputs[0], node.output)) else None


def _layer(node: OnnxNode, op: dict, *extra: OnnxNode) -> Match:
    return Match(op, (node.inputs[0],), (node, *extra), node)


def relu(view: ModelView, node: OnnxNode) -> Result:
    return _layer(node, {"type": "relu"})


def leaky_relu(view: ModelView, node: OnnxNode) -> Result:
    return _layer(node, {"type": "leaky_relu", "slope": float(node.attrs.get("alpha", 0.01))})


def sigmoid(view: ModelView, node: OnnxNode) -> Result:
    mul = _times_input(view, node)
    if mul is not None:  # x · Sigmoid(x): how SiLU is exported (no native op before opset 24)
        return _layer(node, {"type": "silu"}, mul)
    return _layer(node, {"type": "sigmoid"})


def tanh(view: ModelView, node: OnnxNode) -> Result:
    return _layer(node, {"type": "tanh"})


def clip(view: ModelView, node: OnnxNode) -> Result:
    bounds = []
    for index, what in ((1, "lower bound"), (2, "upper bound")):
        value = const_input(view, node, index, what)
        if isinstance(value, NoMatch):
            return value
        if scalar(value) is None:
            return NoMatch(f"its {what} is not a single number")
        bounds.append(scalar(value))
    low, high = bounds
    assert low is not None and high is not None
    if low == 0 and high == 6:
        return _layer(node, {"type": "relu6"})
    if not low < high:
        return NoMatch(f"Clip({low:g}, {high:g}) — expected a lower bound below the upper bound")
    return _layer(node, {"type": "hardtanh", "min_val": low, "max_val": high})


def elu(view: ModelView, node: OnnxNode) -> Result:
    return _layer(node, {"type": "elu", "alpha": float(node.attrs.get("alpha", 1.0))})


def selu(view: ModelView, node: OnnxNode) -> Result:
    alpha, gamma = (
        float(node.attrs.get("alpha", 1.67326319217681884765625)),
        float(node.attrs.get("gamma", 1.05070102214813232421875)),
    )
    if not (_close(alpha, SELU_ALPHA) and _close(gamma, SELU_SCALE)):
        return NoMatch(f"Selu(alpha={alpha:g}, gamma={gamma:g}) — specc's selu has PyTorch's constants only")
    return _layer(node, {"type": "selu"})


def hard_sigmoid(view: ModelView, node: OnnxNode) -> Result:
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    if not (_close(alpha, HARD_SIGMOID[0]) and _close(beta, HARD_SIGMOID[1])):
        return NoMatch(f"HardSigmoid(alpha={alpha:g}, beta={beta:g}) — specc's hardsigmoid is PyTorch's (1/6, 1/2)")
    mul = _times_input(view, node)
    if mul is not None:  # x · HardSigmoid(x): hardswish below opset 14
        return _layer(node, {"type": "hardswish"}, mul)
    return _layer(node, {"type": "hardsigmoid"})


def hard_swish(view: ModelView, node: OnnxNode) -> Result:
    return _layer(node, {"type": "hardswish"})


def softplus(view: ModelView, node: OnnxNode) -> Result:
    tanh = only_reader(view, node.output)
    if tanh is not None and tanh.op_type == "Tanh":
        mul = only_reader(view, tanh.output)
        if mul is not None and mul.op_type == "Mul" and sorted(mul.inputs) == sorted((node.inputs[0], tanh.output)):
            return _layer(node, {"type": "mish"}, tanh, mul)  # x · tanh(softplus(x)): Mish before opset 18
    return _layer(node, {"type": "softplus"})


def mish(view: ModelView, node: OnnxNode) -> Result:
    return _layer(node, {"type": "mish"})


def gelu(view: ModelView, node: OnnxNode) -> Result:
    approximate = node.attrs.get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else str(approximate)
    return _layer(node, {"type": "gelu", "approximate": approximate})


def _const_operand(view: ModelView, node: OnnxNode | None, op_type: str, value: str) -> float | None:
    """The number `node` (an `op_type` of `value` and a one-element constant) applies; None
    when it is not such a node."""
    if node is None or node.op_type != op_type or value not in node.inputs or len(node.inputs) != 2:
        return None
    other = view.const(node.inputs[1] if node.inputs[0] == value else node.inputs[0])
    return None if other is None else scalar(other)


def gelu_erf(view: ModelView, node: OnnxNode) -> Result:
    """x/2 · (1 + erf(x/√2)), as exporters write GELU before opset 20: Div(x, √2) or
    Mul(x, 1/√2), Erf, Add 1, then Mul by x and by 1/2 in either order."""
    x = node.inputs[0]
    div, mul = _const_operand(view, node, "Div", x), _const_operand(view, node, "Mul", x)
    if not ((div and _close(div, math.sqrt(2))) or (mul and _close(mul, math.sqrt(0.5)))):
        return NoMatch("not GELU's x/√2, and specc has no layer that scales by a constant")
    erf = only_reader(view, node.output)
    add = only_reader(view, erf.output) if erf is not None and erf.op_type == "Erf" else None
    if erf is None or add is None or _const_operand(view, add, "Add", erf.output) != 1:
        return NoMatch("it scales by 1/√2 but is not followed by GELU's Erf and + 1")
    first = only_reader(view, add.output)
    second = only_reader(view, first.output) if first is not None else None
    if first is None or second is None or first.op_type != "Mul" or second.op_type != "Mul":
        return NoMatch("GELU's erf is not multiplied by x and 1/2")
    half_first = _const_operand(view, first, "Mul", add.output) == 0.5 and sorted(second.inputs) == sorted(
        (x, first.output)
    )
    x_first = (
        sorted(first.inputs) == sorted((x, add.output)) and _const_operand(view, second, "Mul", first.output) == 0.5
    )
    if not (half_first or x_first):
        return NoMatch("GELU's erf is not multiplied by x and 1/2")
    return _layer(node, {"type": "gelu"}, erf, add, first, second)


def prelu(view: ModelView, node: OnnxNode) -> Result:
    slope = const_input(view, node, 1, "slope")
    if isinstance(slope, NoMatch):
        return slope
    shape = view.shape(node.inputs[0])
    channels = shape[1] if len(shape) > 1 else None
    flat = slope.reshape(-1)
    if flat.size != 1 and flat.size != channels:
        return NoMatch(f"its slope has shape {tuple(slope.shape)} — expected one slope or one per channel")
    match = _layer(node, {"type": "prelu", "shared": flat.size == 1})
    return Match(match.op, match.inputs, match.nodes, match.anchor, {"weight": flat.copy()})


PATTERNS = {
    "Relu": relu,
    "LeakyRelu": leaky_relu,
    "Sigmoid": sigmoid,
    "Tanh": tanh,
    "Clip": clip,
    "Elu": elu,
    "Selu": selu,
    "HardSigmoid": hard_sigmoid,
    "HardSwish": hard_swish,
    "Softplus": softplus,
    "Mish": mish,
    "Gelu": gelu,
    "PRelu": prelu,
    "Div": gelu_erf,
}


# op_type -> the activation patterns a node of it may begin (the decomposed forms specc and
# exporters write included)
RULES: dict[str, tuple[Pattern, ...]] = {
    **{k: (v,) for k, v in PATTERNS.items()},
    "Mul": (gelu_tanh, softplus_scaled, gelu_erf),
    "Softplus": (softplus_scaled, softplus),
}


def fuse_activation(view: ModelView, layer: Match) -> Match:
    """`layer` (a conv, linear or conv_transpose) with the activation that alone reads its
    output fused in as `activation:`; `layer` itself when there is none, or when the
    activation is named as a layer of its own (`c0` then `t`: specc's standalone layer)."""
    out = layer.output
    readers = view.consumers(out)
    if not readers or view.is_output(out):
        return layer
    act = _activation(view, readers[0])
    if act is None or act.inputs != (out,) or act.weights or act.op["type"] not in FUSABLE:
        return layer
    if not {r.index for r in readers} <= {n.index for n in act.nodes}:
        return layer  # another layer reads the value before the activation
    if _named_apart(layer.anchor, act.nodes[-1]):
        return layer
    params = {k: v for k, v in act.op.items() if k != "type"}
    if act.op["type"] == "leaky_relu":  # the name form reads the layer's own `slope`
        fused: dict = {"activation": "leaky_relu", "slope": params["slope"]}
    else:
        fused = {"activation": {"type": act.op["type"], **params} if params else act.op["type"]}
    return layer.extended(fused, act.nodes)


def _activation(view: ModelView, node: OnnxNode) -> Match | None:
    for pattern in RULES.get(node.op_type, ()):
        found = pattern(view, node)
        if isinstance(found, Match):
            return found
    return None


def _named_apart(layer: OnnxNode, activation: OnnxNode) -> bool:
    """Both nodes carry plain names (no scope path) that differ: two layers, as specc names a
    standalone activation (`c0`, `t`); a fused one is `c0/conv`, `c0`, and PyTorch's scopes
    (`/conv1/Conv`, `/relu/Relu`) are fused as before."""
    plain = [n.name for n in (layer, activation) if n.name and "/" not in n.name and not _generated(n)]
    return len(plain) == 2 and plain[0] != plain[1]


def _generated(node: OnnxNode) -> bool:
    """A name an exporter makes from the op alone (`Relu_3`, `node_Conv_0`, `node_relu`)."""
    return re.fullmatch(rf"(node_)?{node.op_type}(_\d+)?", node.name, flags=re.IGNORECASE) is not None
