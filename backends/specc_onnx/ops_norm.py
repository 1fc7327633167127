"""The ONNX entries of the normalisation family (`specc.ops_norm`).

- local_response_norm: ONNX's LRN has PyTorch's convention (alpha / size, a window of size
  channels) for odd sizes; for even ones the two put the extra channel on opposite sides (and
  onnxruntime refuses them), so an even window is computed as PyTorch does: x², a 1x1
  convolution with a 0/1 band matrix (the window sums), then x / (k + alpha/size · sum)^beta.
- group_norm: the groups as the channels of an InstanceNormalization on (N, G, C/G·H·W)
  (GroupNormalization exists only from opset 18, with per-group scales until 21), then the
  per-channel affine map.
- instance_norm: InstanceNormalization (opset 6).
- layer_norm: LayerNormalization on the channels-last view from opset 17; below it, the
  mean and variance over the channel axis with ReduceMean.
"""

from __future__ import annotations

import numpy as np

from specc.ops_norm import lrn_band
from specc_onnx.builder import Builder, Layer
from specc_onnx.ops_pooling import constant, reduce, reshape

LAYER_NORMALIZATION_OPSET = 17


def _per_channel(b: Builder, layer: Layer, tensor: str, suffix: str) -> str:
    """A (C,) tensor shaped to broadcast over the step's input: (C, 1, 1) for a feature map."""
    if len(layer.in_shapes[0]) == 1:
        return tensor
    shape = constant(b, f"{layer.name}/{suffix}_shape", np.array([-1, 1, 1], dtype=np.int64))
    return b.add("Reshape", [tensor, shape], f"{layer.name}/{suffix}", f"{layer.name}/{suffix}")


def _affine(b: Builder, layer: Layer, normed: str, out: str) -> str:
    """normed · weight + bias, per channel."""
    weight = _per_channel(b, layer, b.weight(layer, "weight"), "scale")
    bias = _per_channel(b, layer, b.weight(layer, "bias"), "shift")
    scaled = b.add("Mul", [normed, weight], f"{layer.name}/scaled", f"{layer.name}/scaled")
    return b.add("Add", [scaled, bias], out, layer.name)


def _scale_shift(b: Builder, layer: Layer, affine: bool, channels: int) -> tuple[str, str]:
    """The layer's (C,) scale and shift, or ones and zeros without an affine map."""
    if affine:
        return b.weight(layer, "weight"), b.weight(layer, "bias")
    ones = b.const(f"{layer.name}/ones", np.ones(channels, np.float32))
    return ones, b.const(f"{layer.name}/zeros", np.zeros(channels, np.float32))


def local_response_norm(b: Builder, layer: Layer, out: str, *, size: int, alpha: float, beta: float, k: float) -> str:
    x = layer.inputs[0]
    if size % 2:
        return b.add("LRN", [x], out, layer.name, size=size, alpha=float(alpha), beta=float(beta), bias=float(k))
    channels = layer.in_shapes[0][0]
    band = np.array(lrn_band(channels, size), np.float32).reshape(channels, channels, 1, 1)
    name = layer.name
    squared = b.add("Mul", [x, x], f"{name}/squared", f"{name}/squared")
    window = b.add("Conv", [squared, b.const(f"{name}/band", band)], f"{name}/window_sum", f"{name}/window_sum")
    scaled = b.add(
        "Mul",
        [window, b.const(f"{name}/alpha", np.array(alpha / size, np.float32))],
        f"{name}/scaled",
        f"{name}/scaled",
    )
    shifted = b.add(
        "Add", [scaled, b.const(f"{name}/k", np.array(k, np.float32))], f"{name}/shifted", f"{name}/shifted"
    )
    divisor = b.add(
        "Pow", [shifted, b.const(f"{name}/beta", np.array(beta, np.float32))], f"{name}/divisor", f"{name}/divisor"
    )
    return b.add("Div", [x, divisor], out, name)


def group_norm(b: Builder, layer: Layer, out: str, *, groups: int, eps: float, affine: bool) -> str:
    shape = list(layer.in_shapes[0])
    name = layer.name
    grouped = reshape(b, layer.inputs[0], [groups, -1], f"{name}/grouped", f"{name}/grouped")  # (N, G, C/G·H·W)
    ones = b.const(f"{name}/group_ones", np.ones(groups, np.float32))
    zeros = b.const(f"{name}/group_zeros", np.zeros(groups, np.float32))
    normed = b.add(
        "InstanceNormalization", [grouped, ones, zeros], f"{name}/normed", f"{name}/normed", epsilon=float(eps)
    )
    if not affine:
        return reshape(b, normed, shape, out, name)
    return _affine(b, layer, reshape(b, normed, shape, f"{name}/ungrouped", f"{name}/ungrouped"), out)


def instance_norm(b: Builder, layer: Layer, out: str, *, eps: float, affine: bool) -> str:
    scale, shift = _scale_shift(b, layer, affine, layer.in_shapes[0][0])
    return b.add("InstanceNormalization", [layer.inputs[0], scale, shift], out, layer.name, epsilon=float(eps))


def layer_norm(b: Builder, layer: Layer, out: str, *, eps: float, affine: bool) -> str:
    x, name = layer.inputs[0], layer.name
    on_map = len(layer.in_shapes[0]) == 3
    if b.opset >= LAYER_NORMALIZATION_OPSET:
        scale, shift = _scale_shift(b, layer, affine, layer.in_shapes[0][0])
        if not on_map:
            return b.add("LayerNormalization", [x, scale, shift], out, name, axis=-1, epsilon=float(eps))
        last = b.add("Transpose", [x], f"{name}/channels_last", f"{name}/channels_last", perm=[0, 2, 3, 1])
        normed = b.add(
            "LayerNormalization", [last, scale, shift], f"{name}/normed", f"{name}/normed", axis=-1, epsilon=float(eps)
        )
        return b.add("Transpose", [normed], out, name, perm=[0, 3, 1, 2])
    mean = reduce(b, "ReduceMean", x, [1], f"{name}/mean", f"{name}/mean")
    centred = b.add("Sub", [x, mean], f"{name}/centred", f"{name}/centred")
    squared = b.add("Mul", [centred, centred], f"{name}/squared", f"{name}/squared")
    var = reduce(b, "ReduceMean", squared, [1], f"{name}/var", f"{name}/var")
    shifted = b.add(
        "Add", [var, b.const(f"{name}/eps", np.array(eps, np.float32))], f"{name}/var_eps", f"{name}/var_eps"
    )
    std = b.add("Sqrt", [shifted], f"{name}/std", f"{name}/std")
    if not affine:
        return b.add("Div", [centred, std], out, name)
    return _affine(b, layer, b.add("Div", [centred, std], f"{name}/normed", f"{name}/normed"), out)


OP_TABLE = {
    "local_response_norm": local_response_norm,
    "group_norm": group_norm,
    "instance_norm": instance_norm,
    "layer_norm": layer_norm,
}
