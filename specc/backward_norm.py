"""The backward of the normalisation family (`specc.ops_norm`): the full derivative (the
vector-Jacobian product) at the forward input, which each definition reads and from which it
recomputes the statistics. These layers have no rectifier, so every method sends the plain
gradient through them.

Group, instance and layer norm share one form. With x̂ = (x - mean) / sqrt(var + eps) over a
set of M values (a group's channels and positions, a channel's positions, a position's
channels) and ĝ the signal times the per-channel scale,

    dL/dx = (ĝ - mean(ĝ) - x̂ · mean(ĝ · x̂)) / sqrt(var + eps).

Local response normalisation, y_c = x_c · D_c^-beta with D_c = k + alpha/n · sum over c's
window of x_j², gives

    dL/dx_j = g_j · D_j^-beta - 2·alpha·beta/n · x_j · sum over the windows c holding j of g_c · x_c · D_c^(-beta-1),

the sums being products with a constant 0/1 band matrix over the channels.
"""

from __future__ import annotations

from collections.abc import Sequence

from specc.gradbase import Backward, GradBuilder, Value, where_of
from specc.lowering import Step
from specc.ops_norm import lrn_band


def normalised_vjp(b: GradBuilder, x: Value, g: Value, axes: Sequence[int], eps: float, where: str) -> Value:
    """The backward of x̂ = (x - mean) / sqrt(var + eps), statistics over `axes`, for signal g."""
    mean = b.reduce_mean(x, axes, f"{where}/mean")
    centred = b.sub(x, mean, f"{where}/centred")
    var = b.reduce_mean(b.mul(centred, centred, f"{where}/squared"), axes, f"{where}/var")
    inv_std = b.rsqrt(var, eps, f"{where}/inv_std")
    normed = b.mul(centred, inv_std, f"{where}/normed")
    g_mean = b.reduce_mean(g, axes, f"{where}/g_mean")
    g_along = b.reduce_mean(b.mul(g, normed, f"{where}/g_normed"), axes, f"{where}/g_along")
    g_centred = b.sub(g, g_mean, f"{where}/g_centred")
    rest = b.sub(g_centred, b.mul(normed, g_along, f"{where}/along"), f"{where}/rest")
    return b.mul(rest, inv_std, f"{where}/vjp")


def _scaled_signal(b: GradBuilder, step: Step, g: Value) -> Value:
    """g times the per-channel scale (the affine map's weight), when the layer has one."""
    if not step.op.affine:  # type: ignore[attr-defined]
        return g
    where = where_of(step)
    scale = b.per_channel(b.weight(step.layer, "weight"), len(b.shape(step.name)), f"{where}/scale")
    return b.mul(g, scale, f"{where}/scaled")


def _group_norm(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where, src = where_of(step), step.inputs[0]
    shape = b.shape(src)
    groups = step.op.groups  # type: ignore[attr-defined]
    size = 1
    for dim in shape:
        size *= dim
    grouped = (groups, size // groups)  # (G, C/G · H · W): the values each group normalises
    x = b.reshape(b.value(src), grouped, f"{where}/x_grouped")
    signal = b.reshape(_scaled_signal(b, step, g), grouped, f"{where}/g_grouped")
    out = normalised_vjp(b, x, signal, (2,), step.op.eps, where)  # type: ignore[attr-defined]
    return [b.reshape(out, shape, f"{where}/ungrouped")]


def _instance_norm(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    src = step.inputs[0]
    signal = _scaled_signal(b, step, g)
    return [normalised_vjp(b, b.value(src), signal, (2, 3), step.op.eps, where_of(step))]  # type: ignore[attr-defined]


def _layer_norm(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    src = step.inputs[0]
    signal = _scaled_signal(b, step, g)
    return [normalised_vjp(b, b.value(src), signal, (1,), step.op.eps, where_of(step))]  # type: ignore[attr-defined]


def _mix_channels(b: GradBuilder, v: Value, matrix: list[list[float]], shape: tuple[int, ...], where: str) -> Value:
    """matrix (C, C) applied over the channel axis at every position."""
    c, h, w = shape
    flat = b.reshape(v, (c, h * w), f"{where}/flat")
    mixed = b.matmul(b.const(f"{where}/matrix", matrix, (c, c)), flat, f"{where}/mixed")
    return b.reshape(mixed, shape, f"{where}/map")


def _local_response_norm(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op, where, src = step.op, where_of(step), step.inputs[0]
    size, alpha, beta, k = op.size, op.alpha, op.beta, op.k  # type: ignore[attr-defined]
    shape = b.shape(src)
    band = lrn_band(shape[0], size)
    x = b.value(src)
    window_sum = _mix_channels(b, b.mul(x, x, f"{where}/squared"), band, shape, f"{where}/window")
    scaled = b.scale(window_sum, alpha / size, f"{where}/scaled_sum")
    d = b.add(scaled, b.const(f"{where}/k", [k], (1,)), f"{where}/d")
    direct = b.mul(g, b.pow(d, -beta, f"{where}/d_beta"), f"{where}/direct")
    weighted = b.mul(b.mul(g, x, f"{where}/gx"), b.pow(d, -beta - 1.0, f"{where}/d_beta1"), f"{where}/weighted")
    transposed = [list(column) for column in zip(*band)]
    through = _mix_channels(b, weighted, transposed, shape, f"{where}/windows")
    cross = b.mul(b.scale(through, 2.0 * alpha * beta / size, f"{where}/cross_scale"), x, f"{where}/cross")
    return [b.sub(direct, cross, f"{where}/vjp")]


BACKWARD: dict[str, Backward] = {
    "local_response_norm": Backward(_local_response_norm, reads=("input",)),
    "group_norm": Backward(_group_norm, reads=("input",)),
    "instance_norm": Backward(_instance_norm, reads=("input",)),
    "layer_norm": Backward(_layer_norm, reads=("input",)),
}
