"""The ONNX entries of the pooling family (`specc.ops_pooling`), and small node helpers the
normalisation family shares (`constant`, `reduce`).

ONNX has no adaptive pools. Where the adaptive windows are a plain pool's (13 -> 6 is a 3x3
stride-2 pool; n -> n is the identity) the plain node is emitted; otherwise an exact
equivalent: an average is linear, rows then columns, so out = A_h · X · A_wᵀ with constant
matrices (A_h[i, j] = 1 / window length where row j is in window i); a max is Gather of each
window's pixels (a constant index table, short windows padded with their own first pixel)
then ReduceMax. LP pooling is decomposed as PyTorch computes it (ONNX's LpPool takes |x| and
integer p only): x^p, an average pool, times the window size, to the power 1/p.
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from specc.ops_pooling import ceil_overhang, flat_windows, padded_windows, uniform_window, window_weights
from specc_onnx.builder import Builder, Layer

# Reduce* ops that read their axes from an attribute before this opset, from an input from it.
REDUCE_AXES_INPUT = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18}


# -- node helpers -----------------------------------------------------------------------------
def constant(b: Builder, name: str, array: np.ndarray) -> str:
    """A Constant node: unlike an initializer, its value is part of the graph, so strict shape
    inference reads it (Reshape targets, Reduce axes)."""
    return b.add("Constant", [], name, name, value=numpy_helper.from_array(np.ascontiguousarray(array), name))


def reduce(b: Builder, op_type: str, x: str, axes: list[int], out: str, name: str, keepdims: bool = True) -> str:
    """ReduceMean/ReduceMax/ReduceSum over `axes`, in the form the builder's opset takes."""
    if b.opset >= REDUCE_AXES_INPUT[op_type]:
        axes_value = constant(b, f"{name}/axes", np.array(axes, dtype=np.int64))
        return b.add(op_type, [x, axes_value], out, name, keepdims=int(keepdims))
    return b.add(op_type, [x], out, name, axes=list(axes), keepdims=int(keepdims))


def reshape(b: Builder, x: str, shape: list[int], out: str, name: str) -> str:
    """Reshape to (N, *shape), the batch axis copied (0) so it keeps its symbolic name."""
    target = constant(b, f"{name}/shape", np.array([0, *shape], dtype=np.int64))
    return b.add("Reshape", [x, target], out, name)


def window_table(windows: list[list[int]]) -> np.ndarray:
    """(P, K) int64: each window's flat positions, padded to one width (`padded_windows`)."""
    return np.array(padded_windows(windows), dtype=np.int64)


# -- the emitters -----------------------------------------------------------------------------
def _plain_pool(layer: Layer) -> tuple[list[int], list[int]] | None:
    """(kernel, strides) of the plain pool with the adaptive pool's windows, or None."""
    _, h, w = layer.in_shapes[0]
    _, oh, ow = layer.out_shape
    rows, cols = uniform_window(h, oh), uniform_window(w, ow)
    if rows is None or cols is None:
        return None
    return [rows[0], cols[0]], [rows[1], cols[1]]


def adaptive_avg_pool(b: Builder, layer: Layer, out: str, *, output) -> str:
    x = layer.inputs[0]
    if layer.in_shapes[0] == layer.out_shape:
        return b.add("Identity", [x], out, layer.name)  # VGG's AdaptiveAvgPool2d(7) on a 7x7 map
    plain = _plain_pool(layer)
    if plain is not None:
        kernel, strides = plain
        return b.add("AveragePool", [x], out, layer.name, kernel_shape=kernel, strides=strides)
    _, h, w = layer.in_shapes[0]
    _, oh, ow = layer.out_shape
    rows = b.const(f"{layer.name}/rows", np.array(window_weights(h, oh), np.float32))  # (oh, H)
    cols = b.const(f"{layer.name}/cols", np.array(window_weights(w, ow), np.float32).T)  # (W, ow)
    pooled_rows = b.add("MatMul", [rows, x], f"{layer.name}/pooled_rows", f"{layer.name}/pool_rows")  # (N, C, oh, W)
    return b.add("MatMul", [pooled_rows, cols], out, layer.name)  # (N, C, oh, ow)


def adaptive_max_pool(b: Builder, layer: Layer, out: str, *, output) -> str:
    x = layer.inputs[0]
    if layer.in_shapes[0] == layer.out_shape:
        return b.add("Identity", [x], out, layer.name)
    plain = _plain_pool(layer)
    if plain is not None:
        kernel, strides = plain
        return b.add("MaxPool", [x], out, layer.name, kernel_shape=kernel, strides=strides)
    c, h, w = layer.in_shapes[0]
    _, oh, ow = layer.out_shape
    table = b.const(f"{layer.name}/windows", window_table(flat_windows(layer.in_shapes[0], (oh, ow))))
    flat = reshape(b, x, [c, h * w], f"{layer.name}/flat", f"{layer.name}/flat")  # (N, C, H*W)
    gathered = b.add("Gather", [flat, table], f"{layer.name}/gathered", f"{layer.name}/gather", axis=2)
    maxed = reduce(b, "ReduceMax", gathered, [3], f"{layer.name}/max", f"{layer.name}/max", keepdims=False)
    return reshape(b, maxed, [c, oh, ow], out, layer.name)  # (N, C, oh, ow)


def global_max_pool(b: Builder, layer: Layer, out: str) -> str:
    pooled = b.add("GlobalMaxPool", [layer.inputs[0]], f"{layer.name}/pool", f"{layer.name}/pool")  # (N, C, 1, 1)
    return b.add("Flatten", [pooled], out, layer.name, axis=1)  # (N, C)


def lp_pool(b: Builder, layer: Layer, out: str, *, p, kernel, stride, padding, ceil_mode: bool) -> str:
    """Ceil mode as explicit padding at the far ends, which every opset reads alike: MaxPool
    ignores padded cells and AveragePool with count_include_pad=0 leaves them out of the mean
    (PyTorch's divisor for a window hanging over the edge)."""
    op = layer.op
    (kh, kw), (sh, sw) = op.kernel_hw(), op.stride_hw()  # type: ignore[attr-defined]
    _, h, w = layer.in_shapes[0]
    _, oh, ow = layer.out_shape
    pads = [0, 0, ceil_overhang(h, oh, kh, sh), ceil_overhang(w, ow, kw, sw)]
    attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": pads}
    x = layer.inputs[0]
    if op.is_max():  # type: ignore[attr-defined]
        magnitude = b.add("Abs", [x], f"{layer.name}/abs", f"{layer.name}/abs")
        return b.add("MaxPool", [magnitude], out, layer.name, **attrs)
    power = op.power()  # type: ignore[attr-defined]
    name = layer.name
    powered = b.add("Pow", [x, b.const(f"{name}/p", np.array(power, np.float32))], f"{name}/pow", f"{name}/pow")
    mean = b.add("AveragePool", [powered], f"{name}/mean", f"{name}/mean", count_include_pad=0, **attrs)
    area = b.const(f"{name}/area", np.array(kh * kw, np.float32))
    summed = b.add("Mul", [mean, area], f"{name}/sum", f"{name}/sum")
    return b.add("Pow", [summed, b.const(f"{name}/root", np.array(1.0 / power, np.float32))], out, name)


OP_TABLE = {
    "adaptive_avg_pool": adaptive_avg_pool,
    "adaptive_max_pool": adaptive_max_pool,
    "global_max_pool": global_max_pool,
    "lp_pool": lp_pool,
}
