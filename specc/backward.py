"""The backward pass of an explanation, written once per layer type against a small builder.

Guided backpropagation, the "deconvnet" and plain saliency ("backprop") send a signal from a
unit back to the input; they differ only in the rule at each rectifier (section 3.4 of "The
All Convolutional Net"). Two engines compute that pass: `specc_viz.replay` with torch tensors
(batched over many seeds after one forward pass) and `specc_explain_onnx` as ONNX nodes (a
model that computes the map itself). Both run the definitions below; each engine supplies a
builder whose methods are the few array operations the definitions use (`GradBuilder`), on its
own kind of value (a tensor, or the name of an ONNX value).

A definition takes the builder, the lowered step (`specc.lowering.Step`: fused activations are
steps of their own) and the signal `g` arriving at the step's output, and returns the signals
for the step's inputs, in order. Signals are batched: (R, *per-sample shape).

The rules through a rectifier, with `y` its forward output (y > 0 exactly where its input is
positive, for ReLU and for a leaky ReLU with slope >= 0) and `g` the signal from above:

| method    | ReLU                  | leaky ReLU (slope a)                        |
|-----------|-----------------------|---------------------------------------------|
| backprop  | g * (y > 0)           | g * (1 if y > 0 else a)                     |
| deconvnet | relu(g)               | leaky_relu(g, a)                            |
| guided    | relu(g * (y > 0))     | g * (1 if y > 0 else a), kept where g > 0   |

Leaky choices, and why. backprop is the true derivative. The deconvnet passes the signal
through the *layer's own nonlinearity* and ignores the forward pass (Zeiler & Fergus apply
the rectifier to the reconstruction), so its leaky analogue is leaky_relu(g). guided is
"backprop, then keep only what flows down as positive signal": the backprop rule masked by
g > 0, which for slope 0 is exactly the ReLU rule.

Pooling and convolutions need no rule of their own: the max-pool backward routes the signal
to the switches (argmax positions) of the forward pass, and the backward of a (strided)
convolution or an average pool is its transposed convolution — what all three methods
prescribe. Layers without a rectifier pass their plain gradient under every method.

Pure Python: no torch, onnx or numpy here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from specc.ir import INPUT
from specc.lowering import Step

METHODS = ("backprop", "deconvnet", "guided")

Value = Any  # a torch tensor or an ONNX value name, as the engine has it


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    return method


class ArrayOps(Protocol):
    """The array operations the rules use; `const` values are nested lists of numbers."""

    def relu(self, x: Value) -> Value: ...
    def leaky_relu(self, x: Value, slope: float) -> Value: ...
    def threshold(self, g: Value, y: Value) -> Value:
        """g where y > 0, else 0."""
        ...

    def leaky_derivative(self, g: Value, y: Value, slope: float) -> Value:
        """g where y > 0, else slope * g."""
        ...


class GradBuilder(ArrayOps, Protocol):
    """What a backward engine offers the definitions."""

    method: str

    def value(self, name: str) -> Value:
        """The forward value `name` (a step's output or `input`), one row per seed."""
        ...

    def shape(self, name: str) -> tuple[int, ...]:
        """The per-sample shape of value `name`."""
        ...

    def weight(self, layer: str, suffix: str) -> Value:
        """The layer's state entry (`weight`, `running_var`, ...) as the forward used it."""
        ...

    def const(self, name: str, data: list, shape: tuple[int, ...]) -> Value: ...
    def add(self, a: Value, b: Value, where: str) -> Value: ...
    def sub(self, a: Value, b: Value, where: str) -> Value: ...
    def mul(self, a: Value, b: Value, where: str) -> Value: ...
    def div(self, a: Value, b: Value, where: str) -> Value: ...
    def scale(self, x: Value, factor: float, where: str) -> Value: ...
    def rsqrt(self, x: Value, eps: float, where: str) -> Value:
        """1 / sqrt(x + eps)."""
        ...

    def per_channel(self, x: Value, rank: int, where: str) -> Value:
        """A (C,) vector shaped to broadcast over (R, C, ...) of `rank` per-sample dims."""
        ...

    def sum_channels(self, x: Value, where: str) -> Value:
        """The sum over axis 1, kept as an axis of size 1."""
        ...

    def matmul(self, g: Value, w: Value, where: str) -> Value: ...
    def conv_transpose(
        self,
        g: Value,
        w: Value,
        *,
        stride: tuple[int, int],
        pads: tuple[int, int, int, int],
        output_padding: tuple[int, int],
        groups: int,
        dilation: tuple[int, int],
        where: str,
    ) -> Value:
        """ONNX's ConvTranspose: `pads` (top, left, bottom, right) are cut off the full output."""
        ...

    def unpool_max(self, step: Step, g: Value) -> Value:
        """The signal scattered (added) back to the forward max-pool's switches."""
        ...

    def expand_hw(self, g: Value, shape: tuple[int, int, int], where: str) -> Value:
        """(R, C) -> (R, C, H, W), each value repeated over the map."""
        ...

    def reshape(self, g: Value, shape: tuple[int, ...], where: str) -> Value:
        """To (R, *shape)."""
        ...

    def split_channels(self, g: Value, sizes: Sequence[int], where: str) -> list[Value]: ...


# -- the rectifier rules -------------------------------------------------------------------
def relu_rule(b: ArrayOps, method: str, g: Value, y: Value) -> Value:
    """The signal sent below a ReLU whose output was `y`."""
    if method == "deconvnet":
        return b.relu(g)
    check_method(method)
    masked = b.threshold(g, y)
    return masked if method == "backprop" else b.relu(masked)


def leaky_rule(b: ArrayOps, method: str, g: Value, y: Value, slope: float) -> Value:
    """The signal sent below a leaky ReLU (negative slope `slope` >= 0) whose output was `y`."""
    if method == "deconvnet":
        return b.leaky_relu(g, slope)
    check_method(method)
    derivative = b.leaky_derivative(g, y, slope)
    return derivative if method == "backprop" else b.threshold(derivative, g)


# -- one definition per layer type ---------------------------------------------------------
@dataclass(frozen=True)
class Backward:
    """A layer type's backward: `rule(builder, step, g) -> signals for step.inputs`, and the
    forward values it reads (its own `output`, or its `input`), which an engine must keep."""

    rule: Callable[[Any, Step, Value], list[Value]]
    reads: tuple[str, ...] = ()


def _where(step: Step) -> str:
    return f"{step.name}/grad"


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
        where=f"{_where(step)}/conv_transpose",
    )
    return [out]


def _linear(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [b.matmul(g, b.weight(step.layer, "weight"), f"{_where(step)}/matmul")]


def _relu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [relu_rule(b, b.method, g, b.value(step.name))]


def _leaky_relu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [leaky_rule(b, b.method, g, b.value(step.name), step.op.slope)]  # type: ignore[attr-defined]


def _prelu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    # Not a rectifier rule: the plain derivative, g where x > 0, else slope * g.
    where = _where(step)
    positive = b.threshold(g, b.value(step.inputs[0]))
    slope = b.per_channel(b.weight(step.layer, "weight"), len(b.shape(step.name)), f"{where}/slope")
    negative = b.mul(b.sub(g, positive, f"{where}/rest"), slope, f"{where}/negative")
    return [b.add(positive, negative, f"{where}/sum")]


def _max_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [b.unpool_max(step, g)]


def pool_divisors(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> list[float]:
    """PyTorch's (and ONNX's) average-pool divisor along one axis, per output position."""
    result = []
    for o in range(out):
        start = o * s - p
        end = min(start + k, size + p)
        counted = end - start if include_pad else min(end, size) - max(start, 0)
        result.append(float(max(counted, 1)))
    return result


def _avg_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    where = _where(step)
    c, h, w = b.shape(step.inputs[0])
    _, ho, wo = b.shape(step.name)
    (kh, kw), (sh, sw), (ph, pw) = op.kernel_hw(), op.stride_hw(), op.pads()  # type: ignore[attr-defined]
    include = op.count_include_pad  # type: ignore[attr-defined]
    rows, cols = pool_divisors(h, ho, kh, sh, ph, include), pool_divisors(w, wo, kw, sw, pw, include)
    divisor = b.const(f"{where}/divisor", [[[[r * q for q in cols] for r in rows]]], (1, 1, ho, wo))
    mean = b.div(g, divisor, f"{where}/mean")
    # Each output spreads its share over its window: a depthwise transposed convolution with a
    # kernel of ones. In ceil mode the last windows hang over the end: cut that off.
    pads, extra = [ph, pw, ph, pw], [0, 0]
    for axis, (size, out, k, s, p) in enumerate(((h, ho, kh, sh, ph), (w, wo, kw, sw, pw))):
        reach = (out - 1) * s + k - 2 * p
        if reach > size:
            pads[axis + 2] += reach - size
        else:
            extra[axis] = size - reach
    ones = b.const(f"{where}/window", [[[[1.0] * kw] * kh]] * c, (c, 1, kh, kw))
    out = b.conv_transpose(
        mean,
        ones,
        stride=(sh, sw),
        pads=(pads[0], pads[1], pads[2], pads[3]),
        output_padding=(extra[0], extra[1]),
        groups=c,
        dilation=(1, 1),
        where=f"{where}/spread",
    )
    return [out]


def _global_avg_pool(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    c, h, w = b.shape(step.inputs[0])
    mean = b.scale(g, 1.0 / (h * w), f"{_where(step)}/mean")
    return [b.expand_hw(mean, (c, h, w), f"{_where(step)}/expand")]


def _identity(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [g]


def _batch_norm(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = _where(step)
    scale = b.rsqrt(b.weight(step.layer, "running_var"), step.op.eps, f"{where}/inv_std")  # type: ignore[attr-defined]
    if step.op.affine:  # type: ignore[attr-defined]
        scale = b.mul(scale, b.weight(step.layer, "weight"), f"{where}/gamma")
    factor = b.per_channel(scale, len(b.shape(step.inputs[0])), f"{where}/scale")
    return [b.mul(g, factor, f"{where}/scaled")]


def _flatten(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [b.reshape(g, b.shape(step.inputs[0]), f"{_where(step)}/unflatten")]


def _softmax(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = _where(step)
    y = b.value(step.name)
    total = b.sum_channels(b.mul(g, y, f"{where}/weighted"), f"{where}/total")
    return [b.mul(y, b.sub(g, total, f"{where}/centred"), f"{where}/jvp")]


def _add(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [g] * len(step.inputs)


def _concat(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return b.split_channels(g, [b.shape(s)[0] for s in step.inputs], f"{_where(step)}/part")


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
