"""Pooling beyond the paper's max/avg pools: adaptive average and max pooling (the heads of
torchvision's VGG and AlexNet), global max pooling and power-average (LP) pooling, the
family of Eq. 1 of "The All Convolutional Net" (p = 1 sums, p -> infinity takes the max).

Adaptive pools fix the output size instead of the window: output cell i of an axis of length
n pooled to m cells covers [floor(i * n / m), ceil((i + 1) * n / m)), PyTorch's rule. The
windows may differ in length and overlap (5 -> 3: [0, 2), [1, 4), [3, 5)) or repeat one pixel
(1 -> 7); `adaptive_windows` is that rule, shared by the backends, the backward definitions
and the receptive-field arithmetic.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Union

from pydantic import Field, StrictFloat, field_validator

from specc.opbase import LayerOp, Pair, Shape, ShapeError, _dims, _pair, _spatial, _squash, _Windowed


# -- PyTorch's adaptive windows --------------------------------------------------------------
def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """The [start, end) of each of `out` adaptive windows over `size` pixels (PyTorch's rule)."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def uniform_window(size: int, out: int) -> tuple[int, int] | None:
    """(kernel, stride) when the adaptive windows are a plain pool's (one length, evenly spaced
    by a stride >= 1, the last ending at the edge: 13 -> 6 is 3/2), else None (5 -> 3, 1 -> 7)."""
    windows = adaptive_windows(size, out)
    kernel = windows[0][1] - windows[0][0]
    stride = windows[1][0] - windows[0][0] if out > 1 else kernel
    if stride < 1 or any(w != (i * stride, i * stride + kernel) for i, w in enumerate(windows)):
        return None
    return kernel, stride


def adaptive_window(size: int, out: int) -> tuple[int, int]:
    """(kernel, stride) for receptive-field arithmetic: stride floor(size / out) (0 when the pool
    repeats pixels) and the smallest kernel for which output i's window [i * stride, i * stride +
    kernel) holds its adaptive window: exact for uniform windows, a bound for uneven ones."""
    stride = size // out
    kernel = max(end - i * stride for i, (_, end) in enumerate(adaptive_windows(size, out)))
    return kernel, stride


def flat_windows(shape: Shape, out: tuple[int, int]) -> list[list[int]]:
    """Per output cell of an adaptive pool of a CxHxW `shape` to `out` (row-major), the flat
    input positions (y * W + x) of its window in row-major order."""
    _, h, w = shape
    rows, cols = adaptive_windows(h, out[0]), adaptive_windows(w, out[1])
    return [[y * w + x for y in range(r0, r1) for x in range(c0, c1)] for r0, r1 in rows for c0, c1 in cols]


def window_weights(size: int, out: int) -> list[list[float]]:
    """(out, size): row i averages adaptive window i, so the pool of a map X is A_h · X · A_wᵀ."""
    rows = []
    for start, end in adaptive_windows(size, out):
        rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(size)])
    return rows


def padded_windows(windows: list[list[int]]) -> list[list[int]]:
    """The windows as one rectangular table: each short window padded with its own first
    position, which changes neither a window's maximum nor where it first occurs."""
    width = max(len(w) for w in windows)
    return [list(w) + [w[0]] * (width - len(w)) for w in windows]


MAX_ADAPTIVE_OUTPUT = 16384  # output rows/columns of an adaptive pool


class _Adaptive(LayerOp):
    pooling: ClassVar[bool] = True
    output: Pair = Field(description="a positive integer or [height, width] (the output size)")

    @field_validator("output", mode="after")
    @classmethod
    def _canonical_output(cls, value):
        return _squash(value)

    def output_hw(self) -> tuple[int, int]:
        return _pair(self.output)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, _, _ = _spatial(self.kind, inputs[0])
        oh, ow = self.output_hw()
        if max(oh, ow) > MAX_ADAPTIVE_OUTPUT:  # its windows are listed one by one: bound them first
            raise ShapeError(f"output {_dims(oh, ow)} exceeds the limit of {MAX_ADAPTIVE_OUTPUT:,} a side")
        return (c, oh, ow)

    def window(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        _, h, w = inputs[0]
        (oh, ow) = self.output_hw()
        (kh, sh), (kw, sw) = adaptive_window(h, oh), adaptive_window(w, ow)
        return (kh, kw, sh, sw)

    def describe(self) -> str:
        return "to " + _dims(*self.output_hw())


class AdaptiveAvgPool(_Adaptive):
    """Average pooling to a fixed output size (PyTorch's AdaptiveAvgPool2d)."""

    name_prefix: ClassVar[str] = "aavgpool"
    doc: ClassVar[str] = "adaptive average pooling to a fixed output size"
    type: Literal["adaptive_avg_pool"] = "adaptive_avg_pool"


class AdaptiveMaxPool(_Adaptive):
    """Max pooling to a fixed output size (PyTorch's AdaptiveMaxPool2d)."""

    name_prefix: ClassVar[str] = "amaxpool"
    doc: ClassVar[str] = "adaptive max pooling to a fixed output size"
    type: Literal["adaptive_max_pool"] = "adaptive_max_pool"


class GlobalMaxPool(LayerOp):
    """The maximum over the whole feature map: CxHxW -> C."""

    name_prefix: ClassVar[str] = "gmp"
    doc: ClassVar[str] = "global max pooling to a C-vector"
    vectorizes: ClassVar[bool] = True
    type: Literal["global_max_pool"] = "global_max_pool"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, _, _ = _spatial("global_max_pool", inputs[0])
        return (c,)

    def window(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        _, h, w = inputs[0]
        return (h, w, h, w)


class LPPool(_Windowed):
    """Power-average pooling as PyTorch's LPPool2d: (sum over the window of x^p)^(1/p), Eq. 1
    of the All-CNN paper; p = 1 is sum pooling, `p: max` the limit p -> infinity, the largest
    |x| of the window (max pooling of rectified inputs; PyTorch's LPPool2d(inf)). There is no
    padding (LPPool2d has none). In ceil mode a window hanging over the edge counts as PyTorch
    counts it: the mean of x^p over the pixels it covers, times the full window size."""

    name_prefix: ClassVar[str] = "lppool"
    pooling: ClassVar[bool] = True
    doc: ClassVar[str] = "power-average (LP) pooling: (sum of x^p)^(1/p); p: max is max pooling"
    type: Literal["lp_pool"] = "lp_pool"
    p: Union[Literal["max", "inf"], StrictFloat] = Field(
        description="the power, a number >= 1, or max (also written inf): p -> infinity, max pooling",
    )
    stride: Pair | None = Field(None, description="a positive integer or [height, width] (default: the kernel)")
    padding: Literal["valid"] = Field("valid", description="valid (LP pooling has no padding)")
    ceil_mode: bool = Field(False, description="true for ceil rounding of the output size, false for floor")

    @field_validator("p", mode="after")
    @classmethod
    def _canonical_p(cls, value):
        if value == "inf":
            return "max"  # one spelling in canonical YAML
        if isinstance(value, float) and not 1 <= value < float("inf"):
            raise ValueError("p must be a number >= 1, or max")
        return value

    def is_max(self) -> bool:
        return self.p == "max"

    def power(self) -> float:
        """p as a number (the max form has none)."""
        assert not isinstance(self.p, str), "max-type LP pooling has no power"
        return float(self.p)

    def stride_hw(self) -> tuple[int, int]:
        return _pair(self.kernel if self.stride is None else self.stride)

    def rounds_up(self) -> bool:
        return self.ceil_mode

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, h, w = _spatial("lp_pool", inputs[0])
        kh, kw = self.kernel_hw()
        if not self.ceil_mode and (kh > h or kw > w):
            raise ShapeError(f"{_dims(kh, kw)} lp_pool is larger than its {_dims(h, w)} input")
        return (c, *self._spatial_out("lp_pool", h, w))

    def describe(self) -> str:
        p = self.p if isinstance(self.p, str) else f"{self.p:g}"
        return f"p={p} {super().describe()}" + (" ceil" if self.ceil_mode else "")


def ceil_overhang(size: int, out: int, kernel: int, stride: int) -> int:
    """How far the last of `out` windows reaches past the end of `size` pixels (0 in floor mode)."""
    return max((out - 1) * stride + kernel - size, 0)


CLASSES: tuple[type[LayerOp], ...] = (AdaptiveAvgPool, AdaptiveMaxPool, GlobalMaxPool, LPPool)

__all__ = [
    "CLASSES",
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "GlobalMaxPool",
    "LPPool",
    "adaptive_window",
    "adaptive_windows",
    "ceil_overhang",
    "flat_windows",
    "padded_windows",
    "uniform_window",
    "window_weights",
]
