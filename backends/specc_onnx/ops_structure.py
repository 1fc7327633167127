"""The ONNX entries of the structure ops (`specc.ops_structure`), merged into
`specc_onnx.ops.OP_TABLE`.

Values that decide a shape (Pad pads, Reshape targets, axes) are Constant nodes rather than
initializers, so that strict shape inference reads them and checks every layer's shape
against specc's.

`upsample` is not a Resize. Resize was tried and checked against PyTorch: bilinear and
integer nearest factors agree, but (1) other nearest ratios round differently (14 -> 2 rows:
PyTorch reads row floor(1 * float32(14/2)) = 7, onnxruntime floor(1 / float32(2/14)) = 6),
and (2) Resize's shape inference, at every opset, loses the symbolic batch axis, so the
shapes after it cannot be checked. Each axis is resampled instead by Gather with PyTorch's
own indices and weights (`specc.resample`): nearest copies rows exactly; bilinear adds two
gathered neighbours, weighted.
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from specc.resample import RowMap, linear_rows, nearest_rows
from specc_onnx.builder import Builder, Layer


def _constant(b: Builder, name: str, array: np.ndarray) -> str:
    """A Constant node: a value strict shape inference can read."""
    return b.add("Constant", [], name, name, value=numpy_helper.from_array(np.ascontiguousarray(array), name))


def _ints(values) -> np.ndarray:
    return np.array(list(values), dtype=np.int64)


def conv_transpose(b: Builder, layer: Layer, out: str, *, groups: int, bias: bool, **_unused) -> str:
    """ConvTranspose with PyTorch's weight layout (C_in, C_out/groups, kh, kw), ONNX's too.

    output_padding adds rows at the end, which amounts to cutting `padding - output_padding`
    there instead of `padding`. onnxruntime runs the attribute only below the stride; a larger
    one (PyTorch allows it below the dilation) is written as that asymmetric cut, and where it
    exceeds the padding, as zero rows appended after the convolution, then the bias."""
    op = layer.op
    (kh, kw), (sh, sw), (ph, pw) = op.kernel_hw(), op.stride_hw(), op.padding_hw()  # type: ignore[attr-defined]
    (oh, ow), (dh, dw) = op.output_padding_hw(), op.dilation_hw()  # type: ignore[attr-defined]
    attribute, end_pads, appended = [], [], []
    for extra, stride, pad in ((oh, sh, ph), (ow, sw, pw)):
        in_attribute = extra if extra < stride else 0
        cut = pad - (extra - in_attribute)
        attribute.append(in_attribute)
        end_pads.append(max(cut, 0))
        appended.append(max(-cut, 0))
    inputs = [layer.inputs[0], b.weight(layer, "weight")]
    late_bias = bias and any(appended)  # the appended rows get the bias too: add it after them
    if bias and not late_bias:
        inputs.append(b.weight(layer, "bias"))
    attrs = {
        "kernel_shape": [kh, kw],
        "strides": [sh, sw],
        "pads": [ph, pw, *end_pads],
        "dilations": [dh, dw],
        "output_padding": attribute,
    }
    if not any(appended):
        return b.add("ConvTranspose", inputs, out, layer.name, group=groups, **attrs)
    full = b.add("ConvTranspose", inputs, f"{layer.name}/full", f"{layer.name}/full", group=groups, **attrs)
    pads = _constant(b, f"{layer.name}/appended", _ints([0, 0, 0, 0, 0, 0, *appended]))
    if not late_bias:
        return b.add("Pad", [full, pads], out, layer.name, mode="constant")
    padded = b.add("Pad", [full, pads], f"{layer.name}/padded", f"{layer.name}/padded", mode="constant")
    shape = _constant(b, f"{layer.name}/bias_shape", _ints([-1, 1, 1]))
    column = b.add("Reshape", [b.weight(layer, "bias"), shape], f"{layer.name}/bias", f"{layer.name}/bias")
    return b.add("Add", [padded, column], out, layer.name)


def _resample_axis(b: Builder, layer: Layer, value: str, axis: int, rows: RowMap, out: str, name: str) -> str:
    """Output row i of `value` along `axis` = the sum of weight * input row over rows[i]'s
    pairs: one Gather where every row copies one input row (nearest), else the weighted sum
    of two Gathers (the two neighbours of bilinear)."""
    what = "rows" if axis == 2 else "columns"
    if all(len(pairs) == 1 and pairs[0][1] == 1.0 for pairs in rows):
        indices = b.const(f"{layer.name}/{what}_index", _ints(pairs[0][0] for pairs in rows))
        return b.add("Gather", [value, indices], out, name, axis=axis)
    terms = []
    for k, part in enumerate(("low", "high")):
        indices = b.const(f"{layer.name}/{what}_{part}_index", _ints(pairs[k][0] for pairs in rows))
        weight = np.array([pairs[k][1] for pairs in rows], dtype=np.float32)
        weights = b.const(f"{layer.name}/{what}_{part}_weight", weight.reshape(-1, 1) if axis == 2 else weight)
        base = f"{layer.name}/{what}_{part}"
        gathered = b.add("Gather", [value, indices], base, base, axis=axis)
        terms.append(b.add("Mul", [gathered, weights], f"{base}_share", f"{base}_share"))
    return b.add("Add", terms, out, name)


def upsample(b: Builder, layer: Layer, out: str, *, mode: str, align_corners: bool, **_unused) -> str:
    _, h, w = layer.in_shapes[0]
    _, ho, wo = layer.out_shape
    if mode == "nearest":
        rows, columns = nearest_rows(h, ho), nearest_rows(w, wo)
    else:
        rows, columns = linear_rows(h, ho, align_corners), linear_rows(w, wo, align_corners)
    axes = [(axis, m) for axis, size, target, m in ((2, h, ho, rows), (3, w, wo, columns)) if size != target]
    if not axes:  # the same size: the input itself (interpolation at the pixels is the identity)
        return b.add("Identity", [layer.inputs[0]], out, layer.name)
    value = layer.inputs[0]
    for i, (axis, row_map) in enumerate(axes):
        last = i == len(axes) - 1
        name = layer.name if last else f"{layer.name}/rows"
        value = _resample_axis(b, layer, value, axis, row_map, out if last else name, name)
    return value


ONNX_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def pad(b: Builder, layer: Layer, out: str, *, mode: str, value: float, **_unused) -> str:
    top, bottom, left, right = layer.op.sides()  # type: ignore[attr-defined]
    pads = _constant(b, f"{layer.name}/pads", _ints([0, 0, top, left, 0, 0, bottom, right]))
    inputs = [layer.inputs[0], pads]
    if mode == "constant":
        inputs.append(b.const(f"{layer.name}/value", np.array(value, dtype=np.float32)))
    return b.add("Pad", inputs, out, layer.name, mode=ONNX_PAD_MODES[mode])


def identity(b: Builder, layer: Layer, out: str) -> str:
    # Nothing to compute: readers read the input's value.
    return layer.inputs[0]


def mul(b: Builder, layer: Layer, out: str) -> str:
    rank = len(layer.out_shape)
    operands = []
    for i, (value, shape) in enumerate(zip(layer.inputs, layer.in_shapes)):
        if len(shape) < rank:  # a flat (N, C) gate beside (N, C, H, W) maps: (N, C, 1, 1)
            axes = _constant(b, f"{layer.name}/gate{i}_axes", _ints([2, 3]))
            value = b.add("Unsqueeze", [value, axes], f"{layer.name}/gate{i}", f"{layer.name}/gate{i}")
        operands.append(value)
    result = operands[0]
    for i, operand in enumerate(operands[1:], start=1):
        name = layer.name if i == len(operands) - 1 else f"{layer.name}/product{i}"
        result = b.add("Mul", [result, operand], out if name == layer.name else name, name)
    return result


def scale(b: Builder, layer: Layer, out: str, **_unused) -> str:
    factor = b.weight(layer, "weight")  # (C,)
    if len(layer.in_shapes[0]) == 3:  # broadcast over (N, C, H, W): (C, 1, 1)
        shape = _constant(b, f"{layer.name}/factor_shape", _ints([-1, 1, 1]))
        factor = b.add("Reshape", [factor, shape], f"{layer.name}/factor", f"{layer.name}/factor")
    return b.add("Mul", [layer.inputs[0], factor], out, layer.name)


def maxout(b: Builder, layer: Layer, out: str, *, pieces: int) -> str:
    c, *rest = layer.in_shapes[0]
    shape = _constant(b, f"{layer.name}/groups_shape", _ints([0, c // pieces, pieces, *rest]))
    grouped = b.add("Reshape", [layer.inputs[0], shape], f"{layer.name}/groups", f"{layer.name}/groups")
    if b.opset >= 18:  # ReduceMax reads its axes from an input from opset 18
        axes = _constant(b, f"{layer.name}/axes", _ints([2]))
        return b.add("ReduceMax", [grouped, axes], out, layer.name, keepdims=0)
    return b.add("ReduceMax", [grouped], out, layer.name, axes=[2], keepdims=0)


def log_softmax(b: Builder, layer: Layer, out: str) -> str:
    return b.add("LogSoftmax", [layer.inputs[0]], out, layer.name, axis=1)


OP_TABLE = {
    "conv_transpose": conv_transpose,
    "upsample": upsample,
    "pad": pad,
    "identity": identity,
    "mul": mul,
    "scale": scale,
    "maxout": maxout,
    "log_softmax": log_softmax,
}
