"""The backward of the pooling family (`specc.ops_pooling`), run by both explanation engines.

Max-type pools send the signal to their switches, as max_pool does (section 3.4 of the paper:
backprop, deconvnet and guided agree there): the first position of each window that holds its
maximum. Average-type pools are linear, so their backward is their transpose: adaptive average
pooling is out = A_h · X · A_wᵀ with constant window matrices, whose backward is A_hᵀ · G · A_w.
"""

from __future__ import annotations

from specc.gradbase import Backward, GradBuilder, Value, pool_divisors, spread_windows, where_of
from specc.lowering import Step
from specc.ops_pooling import flat_windows, window_weights


def _adaptive_avg_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = where_of(step)
    _, h, w = b.shape(step.inputs[0])
    (oh, ow) = step.op.output_hw()  # type: ignore[attr-defined]
    rows_t = [list(column) for column in zip(*window_weights(h, oh))]  # A_hᵀ (H, oh)
    rows = b.const(f"{where}/rows", rows_t, (h, oh))
    cols = b.const(f"{where}/cols", window_weights(w, ow), (ow, w))  # A_w (ow, W)
    spread_rows = b.matmul(rows, g, f"{where}/spread_rows")  # (R, C, H, ow)
    return [b.matmul(spread_rows, cols, f"{where}/spread")]  # (R, C, H, W)


def _adaptive_max_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    src = step.inputs[0]
    windows = flat_windows(b.shape(src), step.op.output_hw())  # type: ignore[attr-defined]
    return [b.unpool_windows(g, src, windows, f"{where_of(step)}/unpool")]


def _global_max_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    src = step.inputs[0]
    _, h, w = b.shape(src)
    return [b.unpool_windows(g, src, [list(range(h * w))], f"{where_of(step)}/unpool")]


def _lp_windows(step: Step, shape: tuple[int, ...], out: tuple[int, ...]) -> list[list[int]]:
    """The flat positions of each LP-pool window, cut at the map's edge (ceil mode)."""
    _, h, w = shape
    _, oh, ow = out
    (kh, kw), (sh, sw) = step.op.kernel_hw(), step.op.stride_hw()  # type: ignore[attr-defined]
    return [
        [y * w + x for y in range(i * sh, min(i * sh + kh, h)) for x in range(j * sw, min(j * sw + kw, w))]
        for i in range(oh)
        for j in range(ow)
    ]


def _spread(b: GradBuilder, step: Step, t: Value, where: str) -> Value:
    """Each window's value added to every pixel of the window (the transpose of sum pooling)."""
    return spread_windows(b, step, t, where)


def _lp_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op, where, src = step.op, where_of(step), step.inputs[0]
    if op.is_max():  # type: ignore[attr-defined]
        # y = max |x| over the window: the switch gets g, times the sign of x there.
        windows = _lp_windows(step, b.shape(src), b.shape(step.name))
        routed = b.unpool_windows(g, src, windows, f"{where}/unpool", magnitude=True)
        return [b.mul(routed, b.sign(b.value(src), f"{where}/sign"), f"{where}/signed")]
    # y = (kk · mean_window(x^p))^(1/p), the mean over the d pixels a window covers (PyTorch):
    # dy/dx = x^(p-1) · y^(1-p) · kk / d, summed over the windows holding x. A window whose sum
    # is 0 sends nothing back (PyTorch's sign(s)·relu(|s|) before the root makes it so).
    p = op.power()  # type: ignore[attr-defined]
    _, h, w = b.shape(src)
    _, ho, wo = b.shape(step.name)
    (kh, kw), (sh, sw) = op.kernel_hw(), op.stride_hw()  # type: ignore[attr-defined]
    rows, cols = pool_divisors(h, ho, kh, sh, 0, False), pool_divisors(w, wo, kw, sw, 0, False)
    factor = b.const(f"{where}/factor", [[[[kh * kw / (r * q) for q in cols] for r in rows]]], (1, 1, ho, wo))
    y = b.value(step.name)
    rooted = b.mul(g, b.pow(y, 1.0 - p, f"{where}/root"), f"{where}/rooted")
    rooted = b.threshold(rooted, b.mul(y, y, f"{where}/y_squared"))  # 0 where y = 0 (inf · 0 there)
    per_window = b.mul(rooted, factor, f"{where}/per_window")
    spread = _spread(b, step, per_window, where)
    return [b.mul(spread, b.pow(b.value(src), p - 1.0, f"{where}/power"), f"{where}/chain")]


BACKWARD: dict[str, Backward] = {
    "adaptive_avg_pool": Backward(_adaptive_avg_pool),
    "adaptive_max_pool": Backward(_adaptive_max_pool, reads=("input",)),
    "global_max_pool": Backward(_global_max_pool, reads=("input",)),
    "lp_pool": Backward(_lp_pool, reads=("input", "output")),
}
