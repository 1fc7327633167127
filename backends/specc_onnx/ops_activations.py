"""The ONNX entries of the activation family (`specc.ops_activations`).

Native ops where the opset has them, else the exact decomposition into older ops:

| type        | native (opset)          | below it                                          |
|-------------|-------------------------|---------------------------------------------------|
| sigmoid     | Sigmoid, Tanh           |                                                   |
| relu6       | Clip(0, 6)              |                                                   |
| hardtanh    | Clip(min_val, max_val)  |                                                   |
| elu, selu   | Elu, Selu               |                                                   |
| gelu        | Gelu (20)               | x/2 · (1 + erf(x/√2)); tanh: x/2 · (1 + tanh(√(2/π)(x + 0.044715x³))) |
| silu        | —                       | x · Sigmoid(x)                                    |
| mish        | Mish (18)               | x · Tanh(Softplus(x))                             |
| hardswish   | HardSwish (14)          | x · HardSigmoid(x, 1/6, 1/2)                      |
| hardsigmoid | HardSigmoid(1/6, 1/2)   | (ONNX's default alpha is 0.2: PyTorch's is 1/6)   |
| softplus    | —                       | Where(βx > threshold, x, Softplus(βx) / β)        |

Softplus keeps PyTorch's switch to the identity above the threshold; ONNX's Softplus has none.
Inner nodes are named `<step>/<what>`; never `<step>/conv` or `<step>/linear`, which name the
value before a fused activation (`specc.lowering`).
"""

from __future__ import annotations

import math

import numpy as np

from specc_onnx.builder import Builder, Layer

GELU_OPSET = 20
MISH_OPSET = 18
HARDSWISH_OPSET = 14
# PyTorch's SELU constants (torch.nn.SELU; ONNX's defaults are these rounded to float32).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _scalar(b: Builder, layer: Layer, name: str, value: float) -> str:
    """A float32 scalar initializer of this step."""
    return b.const(f"{layer.name}/{name}", np.array(value, dtype=np.float32))


def _unary(b: Builder, layer: Layer, op_type: str, out: str, **attrs) -> str:
    return b.add(op_type, [layer.inputs[0]], out, layer.name, **attrs)


def _clip(b: Builder, layer: Layer, out: str, low: float, high: float) -> str:
    bounds = [_scalar(b, layer, "min", low), _scalar(b, layer, "max", high)]
    return b.add("Clip", [layer.inputs[0], *bounds], out, layer.name)


def _times_input(b: Builder, layer: Layer, factor: str, out: str) -> str:
    """x · factor, the step's last node."""
    return b.add("Mul", [layer.inputs[0], factor], out, layer.name)


def sigmoid(b: Builder, layer: Layer, out: str) -> str:
    return _unary(b, layer, "Sigmoid", out)


def tanh(b: Builder, layer: Layer, out: str) -> str:
    return _unary(b, layer, "Tanh", out)


def relu6(b: Builder, layer: Layer, out: str) -> str:
    return _clip(b, layer, out, 0.0, 6.0)


def hardtanh(b: Builder, layer: Layer, out: str, *, min_val: float, max_val: float) -> str:
    return _clip(b, layer, out, min_val, max_val)


def elu(b: Builder, layer: Layer, out: str, *, alpha: float) -> str:
    return _unary(b, layer, "Elu", out, alpha=float(alpha))


def selu(b: Builder, layer: Layer, out: str) -> str:
    return _unary(b, layer, "Selu", out, alpha=SELU_ALPHA, gamma=SELU_SCALE)


def gelu(b: Builder, layer: Layer, out: str, *, approximate: str) -> str:
    if b.opset >= GELU_OPSET:
        return _unary(b, layer, "Gelu", out, approximate=approximate)
    x, name = layer.inputs[0], layer.name
    if approximate == "tanh":  # tanh(√(2/π) · (x + 0.044715 · x³))
        cube = b.add(
            "Mul", [x, b.add("Mul", [x, x], f"{name}/square", f"{name}/square")], f"{name}/cube", f"{name}/cube"
        )
        scaled_cube = b.add(
            "Mul", [cube, _scalar(b, layer, "kappa", 0.044715)], f"{name}/kappa_cube", f"{name}/kappa_cube"
        )
        inner = b.add("Add", [x, scaled_cube], f"{name}/inner", f"{name}/inner")
        scaled = b.add(
            "Mul", [inner, _scalar(b, layer, "beta", math.sqrt(2 / math.pi))], f"{name}/scaled", f"{name}/scaled"
        )
        curve = b.add("Tanh", [scaled], f"{name}/tanh", f"{name}/tanh")
    else:  # erf(x / √2)
        scaled = b.add("Mul", [x, _scalar(b, layer, "inv_sqrt2", math.sqrt(0.5))], f"{name}/scaled", f"{name}/scaled")
        curve = b.add("Erf", [scaled], f"{name}/erf", f"{name}/erf")
    one_plus = b.add("Add", [curve, _scalar(b, layer, "one", 1.0)], f"{name}/one_plus", f"{name}/one_plus")
    half = b.add("Mul", [one_plus, _scalar(b, layer, "half", 0.5)], f"{name}/cdf", f"{name}/cdf")
    return _times_input(b, layer, half, out)


def silu(b: Builder, layer: Layer, out: str) -> str:
    gate = b.add("Sigmoid", [layer.inputs[0]], f"{layer.name}/sigmoid", f"{layer.name}/sigmoid")
    return _times_input(b, layer, gate, out)


def mish(b: Builder, layer: Layer, out: str) -> str:
    if b.opset >= MISH_OPSET:
        return _unary(b, layer, "Mish", out)
    name = layer.name
    soft = b.add("Softplus", [layer.inputs[0]], f"{name}/softplus", f"{name}/softplus")
    gate = b.add("Tanh", [soft], f"{name}/tanh", f"{name}/tanh")
    return _times_input(b, layer, gate, out)


def hardswish(b: Builder, layer: Layer, out: str) -> str:
    if b.opset >= HARDSWISH_OPSET:
        return _unary(b, layer, "HardSwish", out)
    gate = b.add("HardSigmoid", [layer.inputs[0]], f"{layer.name}/gate", f"{layer.name}/gate", alpha=1 / 6, beta=0.5)
    return _times_input(b, layer, gate, out)


def hardsigmoid(b: Builder, layer: Layer, out: str) -> str:
    return _unary(b, layer, "HardSigmoid", out, alpha=1 / 6, beta=0.5)


def softplus(b: Builder, layer: Layer, out: str, *, beta: float, threshold: float) -> str:
    x, name = layer.inputs[0], layer.name
    scaled, soft = x, ""
    if beta == 1:
        soft = b.add("Softplus", [x], f"{name}/softplus", f"{name}/softplus")
    else:  # log(1 + exp(βx)) / β, as PyTorch computes it
        factor = _scalar(b, layer, "beta", beta)
        scaled = b.add("Mul", [x, factor], f"{name}/scaled", f"{name}/scaled")
        soft = b.add("Softplus", [scaled], f"{name}/softplus", f"{name}/softplus")
        soft = b.add("Div", [soft, factor], f"{name}/unscaled", f"{name}/unscaled")
    linear = b.add("Greater", [scaled, _scalar(b, layer, "threshold", threshold)], f"{name}/above", f"{name}/above")
    return b.add("Where", [linear, x, soft], out, name)


OP_TABLE = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu6": relu6,
    "hardtanh": hardtanh,
    "elu": elu,
    "selu": selu,
    "gelu": gelu,
    "silu": silu,
    "mish": mish,
    "hardswish": hardswish,
    "hardsigmoid": hardsigmoid,
    "softplus": softplus,
}
