"""The base of the backward pass of an explanation: the builder interface, the rectifier
rules and `Backward`, the entry each layer type declares (see `specc.backward`).

The backward pass is written once per layer type against a small builder.

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

    # -- generic primitives (added with the pooling and normalisation families) ------------
    # Axes count from the batched value's axis 0 (the seed axis): axis 1 is the channel axis.
    def reduce_mean(self, x: Value, axes: Sequence[int], where: str) -> Value:
        """The mean over `axes`, kept as axes of size 1."""
        ...

    def reduce_sum(self, x: Value, axes: Sequence[int], where: str) -> Value:
        """The sum over `axes`, kept as axes of size 1."""
        ...

    def pow(self, x: Value, exponent: float, where: str) -> Value:
        """x ** exponent, element-wise."""
        ...

    def sign(self, x: Value, where: str) -> Value:
        """-1, 0 or 1 by the sign of x."""
        ...

    def unpool_windows(
        self, g: Value, source: str, windows: Sequence[Sequence[int]], where: str, magnitude: bool = False
    ) -> Value:
        """The backward of a max over explicit windows of the forward value `source` (C, *map):
        windows[p] lists, in row-major order, the flat map positions pooled into output cell p
        (row-major); g (R, C, *cells) goes to each window's switch, the first position holding
        its maximum (of |x| with `magnitude`), added where windows share one. -> (R, C, *map)."""
        ...

    # -- generic primitives (added with the activation family) ------------------------------
    # Element-wise; a mask (from `compare`) is a boolean value, used only by `select`.
    def exp(self, x: Value, where: str) -> Value: ...
    def tanh(self, x: Value, where: str) -> Value: ...
    def sigmoid(self, x: Value, where: str) -> Value:
        """1 / (1 + exp(-x))."""
        ...

    def erf(self, x: Value, where: str) -> Value: ...
    def softplus(self, x: Value, where: str) -> Value:
        """log(1 + exp(x))."""
        ...

    def affine(self, x: Value, scale: float, shift: float, where: str) -> Value:
        """x * scale + shift."""
        ...

    def compare(self, x: Value, relation: str, value: float, where: str) -> Value:
        """The mask `x <relation> value`, relation one of >, >=, <, <=."""
        ...

    def select(self, mask: Value, a: Value | float, b: Value | float, where: str) -> Value:
        """a where the mask holds, else b; a number stands for itself everywhere."""
        ...

    def clip_mask(self, g: Value, x: Value, low: float, high: float, where: str) -> Value:
        """g where low < x < high, else 0: the backward of a clip to [low, high] (PyTorch's
        hardtanh_backward, 0 at the bounds themselves)."""
        ...

    # -- generic primitives (added with the structure family) -------------------------------
    def conv(
        self,
        x: Value,
        w: Value,
        *,
        stride: tuple[int, int],
        pads: tuple[int, int, int, int],
        groups: int,
        dilation: tuple[int, int],
        where: str,
    ) -> Value:
        """ONNX's Conv (no bias) of (R, C, H, W) with w (C_out, C/groups, kh, kw); `pads`
        (top, left, bottom, right) of zeros."""
        ...

    def slice_axes(
        self, x: Value, axes: Sequence[int], starts: Sequence[int], ends: Sequence[int], where: str
    ) -> Value:
        """x[start:end] along each of `axes` (counted like `reduce_sum`'s), ONNX's Slice."""
        ...


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


@dataclass(frozen=True)
class Backward:
    """A layer type's backward: `rule(builder, step, g) -> signals for step.inputs`, and the
    forward values it reads (its own `output`, or its `input`), which an engine must keep."""

    rule: Callable[[Any, Step, Value], list[Value]]
    reads: tuple[str, ...] = ()


def where_of(step: Step) -> str:
    """The name prefix of the values a step's backward creates (ONNX node names)."""
    return f"{step.name}/grad"


def pool_divisors(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> list[float]:
    """PyTorch's (and ONNX's) average-pool divisor along one axis, per output position."""
    result = []
    for o in range(out):
        start = o * s - p
        end = min(start + k, size + p)
        counted = end - start if include_pad else min(end, size) - max(start, 0)
        result.append(float(max(counted, 1)))
    return result


def spread_windows(b: GradBuilder, step: Step, t: Value, where: str, padding: tuple[int, int] = (0, 0)) -> Value:
    """Each window's value added to every input pixel of the window — the transpose of sum
    pooling with the step's kernel and stride, as a depthwise transposed convolution with a
    kernel of ones. Windows that hang over the end (ceil mode) are cut off."""
    c, h, w = b.shape(step.inputs[0])
    _, ho, wo = b.shape(step.name)
    (kh, kw), (sh, sw) = step.op.kernel_hw(), step.op.stride_hw()  # type: ignore[attr-defined]
    ph, pw = padding
    pads, extra = [ph, pw, ph, pw], [0, 0]
    for axis, (size, out, k, s, p) in enumerate(((h, ho, kh, sh, ph), (w, wo, kw, sw, pw))):
        reach = (out - 1) * s + k - 2 * p  # what a transposed window of every output covers
        if reach > size:
            pads[axis + 2] += reach - size
        else:
            extra[axis] = size - reach
    ones = b.const(f"{where}/window", [[[[1.0] * kw] * kh]] * c, (c, 1, kh, kw))
    return b.conv_transpose(
        t,
        ones,
        stride=(sh, sw),
        pads=(pads[0], pads[1], pads[2], pads[3]),
        output_padding=(extra[0], extra[1]),
        groups=c,
        dilation=(1, 1),
        where=f"{where}/spread",
    )
