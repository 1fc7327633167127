"""The ONNX op table: one small function per spec layer type.

Each function takes the builder, the lowered step (`Layer`), and the op's parameters as
keyword arguments (mirroring the fields of its class in `specc.ops`), appends ONNX nodes and
returns the name of the value holding the step's output. That value is named after the step
(`out`: the layer's name, or `conv1/conv` before a fused activation, which is a `relu` step
of its own), so strict shape inference can be compared with specc's shapes layer by layer.
Weights are read by suffix (`b.weight(layer, "bias")`) with the shapes the op table
declares. Parameters that only matter for training (`init`, `init_std`, `momentum`) and the
fused activation's fields (lowered away) are accepted and ignored.

`OP_TABLE` covers `specc.ops.OPS` exactly; a test asserts it.
"""

from __future__ import annotations

import numpy as np

from specc.errors import UserError
from specc_onnx.builder import Builder, Layer
from specc_onnx.ops_activations import OP_TABLE as ACTIVATION_OP_TABLE
from specc_onnx.ops_norm import OP_TABLE as NORM_OP_TABLE
from specc_onnx.ops_pooling import OP_TABLE as POOLING_OP_TABLE
from specc_onnx.ops_structure import OP_TABLE as STRUCTURE_OP_TABLE


def conv(b: Builder, layer: Layer, out: str, *, groups: int, bias: bool, **_unused) -> str:
    op = layer.op
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel_hw(), op.stride_hw(), op.pads(), op.dilation_hw()  # type: ignore[attr-defined]
    inputs = [layer.inputs[0], b.weight(layer, "weight")]
    if bias:
        inputs.append(b.weight(layer, "bias"))
    attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": [ph, pw, ph, pw], "dilations": [dh, dw]}
    return b.add("Conv", inputs, out, layer.name, group=groups, **attrs)


def _pool_attrs(b: Builder, layer: Layer, ceil_mode: bool) -> dict:
    """ONNX pool attributes that give specc's (and PyTorch's) output size.

    With ceil_mode PyTorch drops a last window that would start in the right padding;
    before opset 22 ONNX's shape inference does not, and predicts one more row or column
    than onnxruntime computes. Whenever that rule drops a window, the remaining windows are
    exactly floor mode's (the dropped one is the only window ceil adds), so such a pool is
    emitted in floor mode, which every opset reads alike."""
    op = layer.op
    (kh, kw), (sh, sw), (ph, pw) = op.kernel_hw(), op.stride_hw(), op.pads()  # type: ignore[attr-defined]
    _, h, w = layer.in_shapes[0]
    attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": [ph, pw, ph, pw], "ceil_mode": int(ceil_mode)}
    axes = ((h, kh, sh, ph), (w, kw, sw, pw))
    want = list(layer.out_shape[1:])
    if not ceil_mode or b.opset >= 22 or [-(-(n + 2 * p - k) // s) + 1 for n, k, s, p in axes] == want:
        return attrs
    if [(n + 2 * p - k) // s + 1 for n, k, s, p in axes] != want:
        # One axis drops its last ceil window, the other keeps one: neither mode fits both.
        raise UserError(
            f"layer {layer.name}: this ceil_mode pooling has no exact form before ONNX opset 22"
            " — compile with --opset 22"
        )
    attrs["ceil_mode"] = 0
    return attrs


def max_pool(b: Builder, layer: Layer, out: str, *, kernel, stride, padding, ceil_mode: bool) -> str:
    return b.add("MaxPool", [layer.inputs[0]], out, layer.name, **_pool_attrs(b, layer, ceil_mode))


def avg_pool(
    b: Builder, layer: Layer, out: str, *, kernel, stride, padding, ceil_mode: bool, count_include_pad: bool
) -> str:
    attrs = _pool_attrs(b, layer, ceil_mode)
    return b.add("AveragePool", [layer.inputs[0]], out, layer.name, count_include_pad=int(count_include_pad), **attrs)


def global_avg_pool(b: Builder, layer: Layer, out: str) -> str:
    pooled = b.add("GlobalAveragePool", [layer.inputs[0]], f"{layer.name}/pool", layer.name)  # (N, C, 1, 1)
    return b.add("Flatten", [pooled], out, f"{layer.name}/flatten", axis=1)  # (N, C)


def dropout(b: Builder, layer: Layer, out: str, *, rate: float, spatial: bool) -> str:
    # Training only: inference reads the input unchanged, so no node is emitted.
    return layer.inputs[0]


def relu(b: Builder, layer: Layer, out: str) -> str:
    return b.add("Relu", [layer.inputs[0]], out, layer.name)


def leaky_relu(b: Builder, layer: Layer, out: str, *, slope: float) -> str:
    return b.add("LeakyRelu", [layer.inputs[0]], out, layer.name, alpha=float(slope))


def prelu(b: Builder, layer: Layer, out: str, **_unused) -> str:
    slope = b.weight(layer, "weight")  # (C,) or (1,)
    if len(layer.in_shapes[0]) == 3:  # broadcast over (N, C, H, W): (C, 1, 1)
        shape = b.const(f"{layer.name}/slope_shape", np.array([-1, 1, 1], dtype=np.int64))
        slope = b.add("Reshape", [slope, shape], f"{layer.name}/slope", f"{layer.name}/slope")
    return b.add("PRelu", [layer.inputs[0], slope], out, layer.name)


def batch_norm(b: Builder, layer: Layer, out: str, *, eps: float, affine: bool, **_training) -> str:
    """Inference-mode BatchNormalization (running statistics). ONNX accepts (N, C) inputs as
    well as (N, C, H, W), so flat vectors need no reshaping."""
    channels = layer.in_shapes[0][0]
    if affine:
        scale, shift = b.weight(layer, "weight"), b.weight(layer, "bias")
    else:
        scale = b.const(f"{layer.name}.weight", np.ones(channels, np.float32))
        shift = b.const(f"{layer.name}.bias", np.zeros(channels, np.float32))
    mean, var = b.weight(layer, "running_mean"), b.weight(layer, "running_var")
    return b.add("BatchNormalization", [layer.inputs[0], scale, shift, mean, var], out, layer.name, epsilon=float(eps))


def flatten(b: Builder, layer: Layer, out: str) -> str:
    return b.add("Flatten", [layer.inputs[0]], out, layer.name, axis=1)


def linear(b: Builder, layer: Layer, out: str, *, bias: bool, **_unused) -> str:
    inputs = [layer.inputs[0], b.weight(layer, "weight")]
    if bias:
        inputs.append(b.weight(layer, "bias"))
    # Gemm with transB keeps the (out, in) layout of the weights, as in PyTorch.
    return b.add("Gemm", inputs, out, layer.name, transB=1)


def softmax(b: Builder, layer: Layer, out: str) -> str:
    return b.add("Softmax", [layer.inputs[0]], out, layer.name, axis=1)


def add(b: Builder, layer: Layer, out: str) -> str:
    if len(layer.inputs) == 2:
        return b.add("Add", list(layer.inputs), out, layer.name)
    return b.add("Sum", list(layer.inputs), out, layer.name)


def concat(b: Builder, layer: Layer, out: str) -> str:
    return b.add("Concat", list(layer.inputs), out, layer.name, axis=1)


OP_TABLE = {
    "conv": conv,
    "max_pool": max_pool,
    "avg_pool": avg_pool,
    "global_avg_pool": global_avg_pool,
    "dropout": dropout,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "prelu": prelu,
    "batch_norm": batch_norm,
    "flatten": flatten,
    "linear": linear,
    "softmax": softmax,
    "add": add,
    "concat": concat,
    **POOLING_OP_TABLE,
    **NORM_OP_TABLE,
    **ACTIVATION_OP_TABLE,
    **STRUCTURE_OP_TABLE,
}
