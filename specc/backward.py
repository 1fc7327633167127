"""The backward pass of an explanation, written once per layer type: the table `BACKWARD`
(the paper's layer types here; further families in `specc/backward_*.py`) and the walk that
sends a seed back to the input. The builder interface, the rectifier rules and the method
table are in `specc.gradbase`.
"""

from __future__ import annotations

from collections.abc import Sequence

from specc.backward_activations import BACKWARD as ACTIVATION_BACKWARD
from specc.backward_norm import BACKWARD as NORM_BACKWARD
from specc.backward_pooling import BACKWARD as POOLING_BACKWARD
from specc.backward_structure import BACKWARD as STRUCTURE_BACKWARD
from specc.gradbase import (  # noqa: F401 - re-exported: the backward pass's vocabulary
    METHODS,
    ArrayOps,
    Backward,
    GradBuilder,
    Value,
    check_method,
    leaky_rule,
    pool_divisors,
    relu_rule,
    spread_windows,
    where_of,
)
from specc.ir import INPUT
from specc.lowering import Step


# -- one definition per layer type ---------------------------------------------------------
def _conv(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    _, h, w = b.shape(step.inputs[0])
    _, ho, wo = b.shape(step.name)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel_hw(), op.stride_hw(), op.pads(), op.dilation_hw()  # type: ignore[attr-defined]
    # Rows/columns the strided forward never reached come back as zeros (output_padding).
    extra = (h - ((ho - 1) * sh - 2 * ph + dh * (kh - 1) + 1), w - ((wo - 1) * sw - 2 * pw + dw * (kw - 1) + 1))
    out = b.conv_transpose(
        g,
        b.weight(step.layer, "weight"),  # (C_out, C_in/groups, kh, kw): ConvTranspose reads it the other way
        stride=(sh, sw),
        pads=(ph, pw, ph, pw),
        output_padding=extra,
        groups=op.groups,  # type: ignore[attr-defined]
        dilation=(dh, dw),
        where=f"{where_of(step)}/conv_transpose",
    )
    return [out]


def _linear(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [b.matmul(g, b.weight(step.layer, "weight"), f"{where_of(step)}/matmul")]


def _relu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [relu_rule(b, b.method, g, b.value(step.name))]


def _leaky_relu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [leaky_rule(b, b.method, g, b.value(step.name), step.op.slope)]  # type: ignore[attr-defined]


def _prelu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    # Not a rectifier rule: the plain derivative, g where x > 0, else slope * g.
    where = where_of(step)
    positive = b.threshold(g, b.value(step.inputs[0]))
    slope = b.per_channel(b.weight(step.layer, "weight"), len(b.shape(step.name)), f"{where}/slope")
    negative = b.mul(b.sub(g, positive, f"{where}/rest"), slope, f"{where}/negative")
    return [b.add(positive, negative, f"{where}/sum")]


def _max_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [b.unpool_max(step, g)]


def _avg_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    where = where_of(step)
    c, h, w = b.shape(step.inputs[0])
    _, ho, wo = b.shape(step.name)
    (kh, kw), (sh, sw), (ph, pw) = op.kernel_hw(), op.stride_hw(), op.pads()  # type: ignore[attr-defined]
    include = op.count_include_pad  # type: ignore[attr-defined]
    rows, cols = pool_divisors(h, ho, kh, sh, ph, include), pool_divisors(w, wo, kw, sw, pw, include)
    divisor = b.const(f"{where}/divisor", [[[[r * q for q in cols] for r in rows]]], (1, 1, ho, wo))
    mean = b.div(g, divisor, f"{where}/mean")
    # Each output spreads its share over its window (ceil mode's overhanging windows cut off).
    return [spread_windows(b, step, mean, where, (ph, pw))]


def _global_avg_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    c, h, w = b.shape(step.inputs[0])
    mean = b.scale(g, 1.0 / (h * w), f"{where_of(step)}/mean")
    return [b.expand_hw(mean, (c, h, w), f"{where_of(step)}/expand")]


def _identity(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [g]


def _batch_norm(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = where_of(step)
    scale = b.rsqrt(b.weight(step.layer, "running_var"), step.op.eps, f"{where}/inv_std")  # type: ignore[attr-defined]
    if step.op.affine:  # type: ignore[attr-defined]
        scale = b.mul(scale, b.weight(step.layer, "weight"), f"{where}/gamma")
    factor = b.per_channel(scale, len(b.shape(step.inputs[0])), f"{where}/scale")
    return [b.mul(g, factor, f"{where}/scaled")]


def _flatten(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [b.reshape(g, b.shape(step.inputs[0]), f"{where_of(step)}/unflatten")]


def _softmax(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = where_of(step)
    y = b.value(step.name)
    total = b.sum_channels(b.mul(g, y, f"{where}/weighted"), f"{where}/total")
    return [b.mul(y, b.sub(g, total, f"{where}/centred"), f"{where}/jvp")]


def _add(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [g] * len(step.inputs)


def _concat(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return b.split_channels(g, [b.shape(s)[0] for s in step.inputs], f"{where_of(step)}/part")


BACKWARD: dict[str, Backward] = {
    "conv": Backward(_conv),
    "max_pool": Backward(_max_pool, reads=("input",)),
    "avg_pool": Backward(_avg_pool),
    "global_avg_pool": Backward(_global_avg_pool),
    "dropout": Backward(_identity),  # inference: the identity
    "relu": Backward(_relu, reads=("output",)),
    "leaky_relu": Backward(_leaky_relu, reads=("output",)),
    "prelu": Backward(_prelu, reads=("input",)),
    "batch_norm": Backward(_batch_norm),
    "flatten": Backward(_flatten),
    "linear": Backward(_linear),
    "softmax": Backward(_softmax, reads=("output",)),
    "add": Backward(_add),
    "concat": Backward(_concat),
    **POOLING_BACKWARD,
    **NORM_BACKWARD,
    **ACTIVATION_BACKWARD,
    **STRUCTURE_BACKWARD,
}


def values_read(steps: Sequence[Step]) -> set[str]:
    """The forward values the backward pass through `steps` reads."""
    names: set[str] = set()
    for step in steps:
        reads = BACKWARD[step.kind].reads
        if "output" in reads:
            names.add(step.name)
        if "input" in reads:
            names.update(step.inputs)
    return names


def run_backward(b: GradBuilder, steps: Sequence[Step], start: str, seed: Value) -> Value | None:
    """Send `seed` from value `start` back through `steps` (in forward order, the ones `start`
    depends on) to the input; None when no signal reaches it."""
    grads: dict[str, Value] = {start: seed}
    for step in reversed(steps):
        g = grads.pop(step.name, None)
        if g is None:
            continue  # nothing flows back through this branch
        signals = BACKWARD[step.kind].rule(b, step, g)
        for i, (src, signal) in enumerate(zip(step.inputs, signals)):
            grads[src] = signal if src not in grads else b.add(grads[src], signal, f"{step.name}/grad/sum{i}")
    return grads.get(INPUT)
