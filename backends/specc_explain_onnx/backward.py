"""The backward pass as ONNX nodes: one small function per layer type, and the ReLU rules.

Each function takes the emitter, the layer (`Step`), and the signal arriving at the layer's
output, and returns the signals for the layer's inputs, in order. They mirror
`specc_viz.replay` op for op:

- conv: the rule of its activation, then ConvTranspose with the conv's own weight (ONNX's
  ConvTranspose weight layout (C_in, C_out / group, kH, kW) is the conv's (C_out, C_in / group,
  kH, kW) read the other way), the same strides, pads, dilations and group, and
  output_padding for the rows a strided forward never reached.
- max_pool: the switches. The forward MaxPool also returns its Indices (flat over the whole
  N*C*H*W input); the signal is scattered back to them with ScatterElements(reduction=add),
  since overlapping windows may share a maximum (MaxUnpool would keep only one).
- avg_pool: the signal divided by each window's divisor (PyTorch's, computed here), then a
  depthwise ConvTranspose with a kernel of ones.
- global_avg_pool: Unsqueeze, scale by 1/(H*W), Expand. linear: MatMul by the weight.
  batch_norm: Mul by gamma / sqrt(var + eps). flatten: Reshape. dropout: nothing. add: the
  signal to every input. concat: Split. softmax: y * (g - sum(g * y)).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

METHODS = ("backprop", "deconvnet", "guided")


# -- the rules: (emitter, signal, forward output y) -> signal below ---------------------------
def relu_rule(e, method: str, g: str, y: str, where: str) -> str:
    if method == "deconvnet":
        return e.node("Relu", [g], f"{where}/deconvnet")
    alive = e.node("Greater", [y, e.zero], f"{where}/alive")  # y > 0 iff x > 0
    passed = g if method == "backprop" else e.node("Relu", [g], f"{where}/positive")
    return e.node("Where", [alive, passed, e.zero], f"{where}/{method}")


def leaky_rule(e, method: str, g: str, y: str, slope: float, where: str) -> str:
    if method == "deconvnet":
        return e.node("LeakyRelu", [g], f"{where}/deconvnet", alpha=float(slope))
    alive = e.node("Greater", [y, e.zero], f"{where}/alive")
    scaled = e.node("Mul", [g, e.scalar(slope)], f"{where}/scaled")
    derivative = e.node("Where", [alive, g, scaled], f"{where}/derivative")
    if method == "backprop":
        return derivative
    positive = e.node("Greater", [g, e.zero], f"{where}/upstream_positive")
    return e.node("Where", [positive, derivative, e.zero], f"{where}/guided")


def _activation(e, step, g: str) -> str:
    op = step.op
    if op.activation == "relu":
        return relu_rule(e, e.method, g, e.value(step.name), f"{step.name}/grad/relu")
    if op.activation == "leaky_relu":
        return leaky_rule(e, e.method, g, e.value(step.name), op.slope, f"{step.name}/grad/leaky_relu")
    return g


# -- one function per layer type ---------------------------------------------------------------
def conv(e, step, g: str) -> list[str]:
    op = step.op
    g = _activation(e, step, g)
    _, h, w = e.shape(step.inputs[0])
    _, ho, wo = e.shape(step.name)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel_hw(), op.stride_hw(), op.pads(), op.dilation_hw()
    extra = [h - ((ho - 1) * sh - 2 * ph + dh * (kh - 1) + 1), w - ((wo - 1) * sw - 2 * pw + dw * (kw - 1) + 1)]
    out = e.node(
        "ConvTranspose",
        [g, e.weight(f"{step.name}.weight")],
        f"{step.name}/grad/conv_transpose",
        kernel_shape=[kh, kw],
        strides=[sh, sw],
        pads=[ph, pw, ph, pw],
        dilations=[dh, dw],
        group=op.groups,
        output_padding=extra,
    )
    return [out]


def linear(e, step, g: str) -> list[str]:
    g = _activation(e, step, g)
    return [e.node("MatMul", [g, e.weight(f"{step.name}.weight")], f"{step.name}/grad/matmul")]


def relu(e, step, g: str) -> list[str]:
    return [relu_rule(e, e.method, g, e.value(step.name), f"{step.name}/grad")]


def leaky_relu(e, step, g: str) -> list[str]:
    return [leaky_rule(e, e.method, g, e.value(step.name), step.op.slope, f"{step.name}/grad")]


def max_pool(e, step, g: str) -> list[str]:
    where = f"{step.name}/grad"
    x = e.value(step.inputs[0])
    shape = e.node("Shape", [x], f"{where}/input_shape")
    flat = e.const(f"{where}/flat", np.array([-1], dtype=np.int64))
    blank = e.node("ConstantOfShape", [shape], f"{where}/blank", value=_float_tensor(0.0))
    zeros = e.node("Reshape", [blank, flat], f"{where}/zeros")
    indices = e.node("Reshape", [e.indices(step.name), flat], f"{where}/switches")
    signal = e.node("Reshape", [g, flat], f"{where}/flat_signal")
    routed = e.node("ScatterElements", [zeros, indices, signal], f"{where}/routed", axis=0, reduction="add")
    return [e.node("Reshape", [routed, shape], f"{where}/unpooled")]


def avg_pool(e, step, g: str) -> list[str]:
    op = step.op
    where = f"{step.name}/grad"
    c, h, w = e.shape(step.inputs[0])
    _, ho, wo = e.shape(step.name)
    (kh, kw), (sh, sw), (ph, pw) = op.kernel_hw(), op.stride_hw(), op.pads()
    divisor = np.outer(
        _divisors(h, ho, kh, sh, ph, op.count_include_pad), _divisors(w, wo, kw, sw, pw, op.count_include_pad)
    )
    scaled = e.node("Div", [g, e.const(f"{where}/divisor", divisor[None, None].astype(np.float32))], f"{where}/mean")
    pads, extra = [ph, pw, ph, pw], [0, 0]
    for axis, (size, out, k, s, p) in enumerate(((h, ho, kh, sh, ph), (w, wo, kw, sw, pw))):
        reach = (out - 1) * s + k - 2 * p  # what a transposed window of every output covers
        if reach > size:
            pads[axis + 2] += reach - size  # ceil mode: the last windows hang over the end
        else:
            extra[axis] = size - reach
    ones = e.const(f"{where}/window", np.ones((c, 1, kh, kw), dtype=np.float32))
    out = e.node(
        "ConvTranspose",
        [scaled, ones],
        f"{where}/spread",
        kernel_shape=[kh, kw],
        strides=[sh, sw],
        pads=pads,
        group=c,
        output_padding=extra,
    )
    return [out]


def _divisors(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> np.ndarray:
    """PyTorch's avg_pool2d divisor along one axis, per output position."""
    result = []
    for o in range(out):
        start = o * s - p
        end = min(start + k, size + p)
        counted = end - start if include_pad else min(end, size) - max(start, 0)
        result.append(max(counted, 1))
    return np.asarray(result, dtype=np.float64)


def global_avg_pool(e, step, g: str) -> list[str]:
    where = f"{step.name}/grad"
    _, h, w = e.shape(step.inputs[0])
    axes = e.const(f"{where}/axes", np.array([2, 3], dtype=np.int64))
    column = e.node("Unsqueeze", [g, axes], f"{where}/unsqueeze")  # (N, C, 1, 1)
    mean = e.node("Mul", [column, e.scalar(1.0 / (h * w))], f"{where}/mean")
    shape = e.node("Shape", [e.value(step.inputs[0])], f"{where}/input_shape")
    return [e.node("Expand", [mean, shape], f"{where}/expand")]


def dropout(e, step, g: str) -> list[str]:
    return [g]


def batch_norm(e, step, g: str) -> list[str]:
    channels = e.shape(step.inputs[0])[0]
    var = e.array(f"{step.name}.running_var", (channels,)).astype(np.float64)
    gamma = e.array(f"{step.name}.weight", (channels,)) if step.op.affine else np.ones(channels)
    scale = gamma / np.sqrt(var + step.op.eps)
    shape = (1, channels) + (1,) * (len(e.shape(step.inputs[0])) - 1)
    factor = e.const(f"{step.name}/grad/scale", scale.reshape(shape).astype(np.float32))
    return [e.node("Mul", [g, factor], f"{step.name}/grad/scaled")]


def flatten(e, step, g: str) -> list[str]:
    shape = e.node("Shape", [e.value(step.inputs[0])], f"{step.name}/grad/input_shape")
    return [e.node("Reshape", [g, shape], f"{step.name}/grad/unflatten")]


def softmax(e, step, g: str) -> list[str]:
    where = f"{step.name}/grad"
    y = e.value(step.name)
    weighted = e.node("Mul", [g, y], f"{where}/weighted")
    axes = e.const(f"{where}/axes", np.array([1], dtype=np.int64))
    total = e.node("ReduceSum", [weighted, axes], f"{where}/total", keepdims=1)
    centred = e.node("Sub", [g, total], f"{where}/centred")
    return [e.node("Mul", [y, centred], f"{where}/jvp")]


def add(e, step, g: str) -> list[str]:
    return [g] * len(step.inputs)


def concat(e, step, g: str) -> list[str]:
    sizes = np.array([e.shape(s)[0] for s in step.inputs], dtype=np.int64)
    split = e.const(f"{step.name}/grad/sizes", sizes)
    outs = [f"{step.name}/grad/part{i}" for i in range(len(step.inputs))]
    return e.node("Split", [g, split], outs, axis=1)


def _float_tensor(value: float):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array([value], dtype=np.float32))


BACKWARD: dict[str, Callable] = {
    "conv": conv,
    "max_pool": max_pool,
    "avg_pool": avg_pool,
    "global_avg_pool": global_avg_pool,
    "dropout": dropout,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "batch_norm": batch_norm,
    "flatten": flatten,
    "linear": linear,
    "softmax": softmax,
    "add": add,
    "concat": concat,
}
