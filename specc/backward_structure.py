"""The backward definitions of the structure ops (`specc.ops_structure`), run by both
explanation engines. None of these layers is a rectifier: each passes its plain gradient
under every method.

- conv_transpose: the convolution with the same weight and geometry (a transposed
  convolution's input-gradient is the convolution it transposes).
- upsample and reflect/replicate pad: linear maps applied per axis, out = A_h X A_wᵀ, so the
  gradient is A_hᵀ G A_w: two matrix products with constants (`specc.resample`).
- constant pad: the gradient is the slice of the signal over the input.
- mul: each input gets the signal times the other inputs, summed over the axes it was
  broadcast along (a per-channel gate collects its whole map).
- scale: the signal times the multipliers. identity: the signal.
- maxout: the signal goes to the piece that held the maximum; tied pieces share it equally,
  as autograd's amax does.
- log_softmax: g - softmax(x) * sum(g), with softmax(x) = exp(y) of the output y.
"""

from __future__ import annotations

from specc.gradbase import Backward, GradBuilder, Value, where_of
from specc.lowering import Step
from specc.ops_structure import ConvTranspose, Pad, Upsample
from specc.resample import RowMap, linear_rows, matrix, nearest_rows, pad_rows, transposed


def _conv_transpose(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    assert isinstance(op, ConvTranspose)
    where = where_of(step)
    _, h, w = b.shape(step.inputs[0])
    ph, pw = op.padding_hw()
    out = b.conv(
        g,
        b.weight(step.layer, "weight"),  # (C_in, C_out/groups, kh, kw): a convolution's (out, in/groups) layout
        stride=op.stride_hw(),
        pads=(ph, pw, ph, pw),
        groups=op.groups,
        dilation=op.dilation_hw(),
        where=f"{where}/conv",
    )
    # With output_padding >= stride (allowed when the dilation is larger) the convolution
    # covers rows past the input; they read only the added rows: cut them off.
    _, ho, wo = _conv_size(b.shape(step.name), op)
    if (ho, wo) != (h, w):
        out = b.slice_axes(out, (2, 3), (0, 0), (h, w), f"{where}/crop")
    return [out]


def _conv_size(shape: tuple[int, ...], op: ConvTranspose) -> tuple[int, int, int]:
    c, ho, wo = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel_hw(), op.stride_hw(), op.padding_hw(), op.dilation_hw()
    return c, (ho + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wo + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def _per_axis(b: GradBuilder, g: Value, rows: RowMap, columns: RowMap, size: tuple[int, int], where: str) -> Value:
    """A_hᵀ G A_w for out = A_h X A_wᵀ given by the row maps of the two axes."""
    h, w = size
    a_h, a_w = matrix(rows, h), matrix(columns, w)  # (Ho, H), (Wo, W)
    left = b.const(f"{where}/rows", transposed(a_h), (h, len(rows)))  # (H, Ho)
    right = b.const(f"{where}/columns", a_w, (len(columns), w))  # (Wo, W)
    return b.matmul(b.matmul(left, g, f"{where}/by_rows"), right, f"{where}/by_columns")


def _upsample(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    assert isinstance(op, Upsample)
    _, h, w = b.shape(step.inputs[0])
    _, ho, wo = b.shape(step.name)
    if op.mode == "nearest":
        rows, columns = nearest_rows(h, ho), nearest_rows(w, wo)
    else:
        rows, columns = linear_rows(h, ho, op.align_corners), linear_rows(w, wo, op.align_corners)
    return [_per_axis(b, g, rows, columns, (h, w), where_of(step))]


def _pad(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    assert isinstance(op, Pad)
    _, h, w = b.shape(step.inputs[0])
    top, bottom, left, right = op.sides()
    if op.mode == "constant":
        return [b.slice_axes(g, (2, 3), (top, left), (top + h, left + w), f"{where_of(step)}/inner")]
    rows, columns = pad_rows(h, top, bottom, op.mode), pad_rows(w, left, right, op.mode)
    return [_per_axis(b, g, rows, columns, (h, w), where_of(step))]


def _identity(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [g]


def _mul(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = where_of(step)
    out = b.shape(step.name)
    # Every input read as the output's rank: a flat (C,) gate beside a map as (C, 1, 1).
    values = []
    for i, name in enumerate(step.inputs):
        shape = b.shape(name)
        value = b.value(name)
        values.append(b.reshape(value, (shape[0], 1, 1), f"{where}/gate{i}") if len(shape) < len(out) else value)
    signals = []
    for i, name in enumerate(step.inputs):
        signal = g
        for j, other in enumerate(values):
            if j != i:
                signal = b.mul(signal, other, f"{where}/by{j}_for{i}")
        shape = b.shape(name)
        if shape != out:  # a gate: collect its map
            signal = b.reduce_sum(signal, (2, 3), f"{where}/collect{i}")
            if len(shape) < len(out):
                signal = b.reshape(signal, shape, f"{where}/flat{i}")
        signals.append(signal)
    return signals


def _scale(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = where_of(step)
    factor = b.per_channel(b.weight(step.layer, "weight"), len(b.shape(step.name)), f"{where}/factor")
    return [b.mul(g, factor, f"{where}/scaled")]


def _maxout(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = where_of(step)
    c, *rest = b.shape(step.inputs[0])
    groups = b.shape(step.name)[0]
    pieces = c // groups
    x = b.reshape(b.value(step.inputs[0]), (groups, pieces, *rest), f"{where}/pieces")
    y = b.reshape(b.value(step.name), (groups, 1, *rest), f"{where}/max")
    # x - max is 0 exactly where x is the maximum (and negative elsewhere): 1 there, else 0.
    at_max = b.compare(b.sub(x, y, f"{where}/below_max"), ">=", 0.0, f"{where}/at_max")
    winners = b.select(at_max, 1.0, 0.0, f"{where}/winners")  # (R, groups, pieces, ...)
    share = b.div(winners, b.reduce_sum(winners, (2,), f"{where}/ties"), f"{where}/share")
    signal = b.mul(share, b.reshape(g, (groups, 1, *rest), f"{where}/signal"), f"{where}/routed")
    return [b.reshape(signal, (c, *rest), f"{where}/channels")]


def _log_softmax(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = where_of(step)
    probabilities = b.exp(b.value(step.name), f"{where}/probabilities")
    total = b.sum_channels(g, f"{where}/total")
    return [b.sub(g, b.mul(probabilities, total, f"{where}/spread"), f"{where}/jvp")]


BACKWARD: dict[str, Backward] = {
    "conv_transpose": Backward(_conv_transpose),
    "upsample": Backward(_upsample),
    "pad": Backward(_pad),
    "identity": Backward(_identity),
    "mul": Backward(_mul, reads=("input",)),
    "scale": Backward(_scale),
    "maxout": Backward(_maxout, reads=("input", "output")),
    "log_softmax": Backward(_log_softmax, reads=("output",)),
}
