"""Structure ops: layers that resize, pad, gate or regroup feature maps (issue #11).

`conv_transpose` (learned upsampling), `upsample` (nearest / bilinear resizing), `pad`,
`identity`, `mul` (element-wise product, squeeze-and-excitation gates), `scale` (a learned
per-channel multiplier, ConvNeXt's layer scale), `maxout` (Goodfellow et al.) and
`log_softmax`. Each class declares its schema, shape rule, state and traits, like those of
`specc.ops`. The sampling arithmetic of `upsample` and `pad`, which the ONNX emitter and
the backward pass both need, is written once, in `specc.resample`.

Receptive fields are integer arithmetic (`LayerOp.window`): a layer that upsamples would need
a jump below 1, so after `conv_transpose` with a stride or `upsample` the summary's receptive
field of later layers is an upper bound (the jump is not divided).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Union

from pydantic import Field, field_validator

from specc.opbase import LayerOp, NonNegInt, Pair, PosInt, Shape, ShapeError, _dims, _pair, _spatial, _squash
from specc.ops import _ACTIVATION_TEXT, FusedActivation, Init, _Activated

NonNegPair = Union[NonNegInt, tuple[NonNegInt, NonNegInt]]
Pads = Union[NonNegInt, tuple[NonNegInt, NonNegInt], tuple[NonNegInt, NonNegInt, NonNegInt, NonNegInt]]


def _shape_text(shape: Shape) -> str:
    return "x".join(map(str, shape))


class ConvTranspose(_Activated):
    """2-D transposed convolution ("deconvolution"): the input-gradient of a convolution,
    used to upsample. Weights (C_in, C_out/groups, kh, kw) as torch.nn.ConvTranspose2d.

    Not a `_Windowed` layer: its window runs the other way (one input pixel writes a kernel's
    worth of outputs), so neither 'same' padding nor the sliding-window lint applies."""

    name_prefix: ClassVar[str] = "deconv"
    doc: ClassVar[str] = "2-D transposed convolution (learned upsampling)"
    width_field: ClassVar[str | None] = "filters"
    type: Literal["conv_transpose"] = "conv_transpose"
    filters: PosInt = Field(description="a positive integer (output channels)")
    kernel: Pair = Field(description="a positive integer or [height, width]")
    stride: Pair = Field(1, description="a positive integer or [height, width]")
    padding: NonNegPair = Field(
        0, description="an integer >= 0 or [height, width]: rows/columns cut from each side of the full output"
    )
    output_padding: NonNegPair = Field(
        0,
        description="an integer >= 0 or [height, width], smaller than stride or dilation: rows/columns added at the end",
    )
    dilation: Pair = Field(1, description="a positive integer or [height, width]")
    groups: PosInt = Field(1, description="a positive integer dividing both channel counts")
    bias: bool = Field(True, description="true or false")
    activation: FusedActivation = Field("none", description=_ACTIVATION_TEXT)
    slope: float = Field(0.01, ge=0, description="the leaky_relu negative slope, a number >= 0")
    init: Init = Field("he", description="he, xavier, gaussian or torch")
    init_std: float = Field(0.01, gt=0, description="the gaussian init's standard deviation (> 0)")

    @field_validator("kernel", "stride", "padding", "output_padding", "dilation", mode="after")
    @classmethod
    def _canonical_pair(cls, value):
        return _squash(value)

    def kernel_hw(self) -> tuple[int, int]:
        return _pair(self.kernel)

    def stride_hw(self) -> tuple[int, int]:
        return _pair(self.stride)

    def padding_hw(self) -> tuple[int, int]:
        """PyTorch's `padding`: cut from each side of the full (H - 1) * s + k_eff output."""
        return _pair(self.padding)

    def output_padding_hw(self) -> tuple[int, int]:
        return _pair(self.output_padding)

    def dilation_hw(self) -> tuple[int, int]:
        return _pair(self.dilation)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, h, w = _spatial("conv_transpose", inputs[0])
        if c % self.groups or self.filters % self.groups:
            raise ShapeError(
                f"groups={self.groups} must divide both the input channels ({c}) and filters ({self.filters})"
            )
        sizes = []
        axes = zip(
            ("height", "width"),
            (h, w),
            self.kernel_hw(),
            self.stride_hw(),
            self.padding_hw(),
            self.output_padding_hw(),
            self.dilation_hw(),
        )
        for axis, n, k, s, p, extra, d in axes:
            if extra >= max(s, d):
                raise ShapeError(
                    f"output_padding {extra} ({axis}) must be smaller than the stride ({s}) or the dilation ({d})"
                    " — a larger one would add rows no input reaches"
                )
            out = (n - 1) * s - 2 * p + d * (k - 1) + extra + 1
            if out <= 0:
                raise ShapeError(
                    f"{_dims(*self.kernel_hw())} conv_transpose on a {_dims(h, w)} input, {axis}:"
                    f" ({n} - 1)*{s} - 2*{p} + {d}*({k} - 1) + {extra} + 1 = {out}"
                    " — expected an output of at least 1x1 (less padding)"
                )
            sizes.append(out)
        return (self.filters, sizes[0], sizes[1])

    def weights(self, inputs: list[Shape]) -> dict[str, Shape]:
        kh, kw = self.kernel_hw()
        entries = {"weight": (inputs[0][0], self.filters // self.groups, kh, kw)}
        return entries | ({"bias": (self.filters,)} if self.bias else {})

    def channel_layout(self, inputs: list[Shape]) -> tuple[Shape, Shape]:
        # The output channels are axis 1 within each group: (groups, C_in/g, C_out/g, kh, kw).
        cin, cout_g, kh, kw = self.weights(inputs)["weight"]
        g = self.groups
        return (g, cin // g, cout_g, kh, kw), (g, 1, cout_g, 1, 1)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        # Every input pixel of every channel writes a kernel into C_out/groups output channels.
        c, h, w = inputs[0]
        kh, kw = self.kernel_hw()
        return c * h * w * (self.filters // self.groups) * kh * kw

    def window(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        # Output position y reads the inputs x with x*s + i*d = y + p (i < k): at most
        # (k_eff - 1) // s + 1 neighbours. Exact at stride 1 (a convolution with the kernel
        # flipped and padding k_eff - 1 - p); an upper bound beyond (see the module docstring).
        spans = [(d * (k - 1)) // s + 1 for k, s, d in zip(self.kernel_hw(), self.stride_hw(), self.dilation_hw())]
        return (spans[0], spans[1], 1, 1)

    def pads(self) -> tuple[int, int]:
        """The receptive-field offset of output 0 (see `window`), not PyTorch's padding
        (`padding_hw`)."""
        h, w = (
            (d * (k - 1) - p) // s
            for k, s, p, d in zip(self.kernel_hw(), self.stride_hw(), self.padding_hw(), self.dilation_hw())
        )
        return (h, w)

    def describe(self) -> str:
        kh, kw = self.kernel_hw()
        sh, sw = self.stride_hw()
        stride = "" if (sh, sw) == (1, 1) else (f"/{sh}" if sh == sw else f"/{sh}x{sw}")
        pad = f" pad {self.padding}" if self.padding != 0 else ""
        extra = f" output_padding {self.output_padding}" if self.output_padding != 0 else ""
        act = f" {self.activation_text()}" if self.activation_text() else ""
        return f"{_dims(kh, kw)}{stride}{pad}{extra}{act}"


class Upsample(LayerOp):
    """Resizing by nearest-neighbour or bilinear interpolation, as PyTorch's F.interpolate
    computes it (rows and weights: `specc.resample`)."""

    name_prefix: ClassVar[str] = "up"
    doc: ClassVar[str] = "nearest or bilinear upsampling (resizing) to a scale or a size"
    type: Literal["upsample"] = "upsample"
    mode: Literal["nearest", "bilinear"] = Field("nearest", description="nearest or bilinear")
    scale: Pair | None = Field(
        None, description="a positive integer or [height, width]: the size factor (give scale or size)"
    )
    size: Pair | None = Field(
        None, description="a positive integer or [height, width]: the output size (give scale or size)"
    )
    align_corners: bool = Field(
        False, description="true or false (bilinear only): true maps corner pixels onto corner pixels"
    )

    @field_validator("scale", "size", mode="after")
    @classmethod
    def _canonical_pair(cls, value):
        return _squash(value)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, h, w = _spatial("upsample", inputs[0])
        if (self.scale is None) == (self.size is None):
            given = "both" if self.scale is not None else "neither"
            raise ShapeError(f"upsample needs either scale or size, and has {given} — expected exactly one")
        if self.align_corners and self.mode != "bilinear":
            raise ShapeError("align_corners applies to mode bilinear only — expected false for nearest")
        if self.size is not None:
            return (c, *_pair(self.size))
        sh, sw = _pair(self.scale)
        return (c, h * sh, w * sw)

    def window(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        # An output pixel reads one input pixel (nearest) or two neighbours per axis (bilinear).
        span = 2 if self.mode == "bilinear" else 1
        return (span, span, 1, 1)

    def describe(self) -> str:
        sh, sw = _pair(self.scale if self.scale is not None else self.size)
        target = f"{'scale' if self.scale is not None else 'size'} {sh if sh == sw else _dims(sh, sw)}"
        corners = " align_corners" if self.align_corners else ""
        return f"{self.mode} {target}{corners}"


class Pad(LayerOp):
    """Padding of a feature map: a constant, its reflection (edge not repeated) or its edge.
    The field is `padding`, as conv's: `pads` is `LayerOp.pads()`, the receptive-field offset."""

    name_prefix: ClassVar[str] = "pad"
    doc: ClassVar[str] = "constant, reflect or replicate padding"
    type: Literal["pad"] = "pad"
    padding: Pads = Field(description="an integer >= 0, [height, width] or [top, bottom, left, right]")
    mode: Literal["constant", "reflect", "replicate"] = Field("constant", description="constant, reflect or replicate")
    value: float = Field(0.0, description="the fill value of mode constant, a number")

    @field_validator("padding", mode="after")
    @classmethod
    def _canonical_padding(cls, value):
        if isinstance(value, (list, tuple)) and len(value) == 4 and value[0] == value[1] and value[2] == value[3]:
            value = (value[0], value[2])  # [t, t, l, l] is [t, l]
        return _squash(value)

    def sides(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right)."""
        if isinstance(self.padding, int):
            return (self.padding, self.padding, self.padding, self.padding)
        if len(self.padding) == 2:
            h, w = self.padding
            return (h, h, w, w)
        top, bottom, left, right = self.padding
        return (top, bottom, left, right)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, h, w = _spatial("pad", inputs[0])
        top, bottom, left, right = self.sides()
        if self.mode != "constant" and self.value != 0:
            raise ShapeError(f"value {self.value:g} applies to mode constant only — this pad is {self.mode}")
        if self.mode == "reflect":
            for what, pad, size in (("rows", max(top, bottom), h), ("columns", max(left, right), w)):
                if pad >= size:
                    raise ShapeError(
                        f"reflect padding of {pad} {what} on a {_dims(h, w)} input — expected fewer than {size}"
                        " (a reflection does not repeat the edge); use replicate or a smaller pad"
                    )
        return (c, h + top + bottom, w + left + right)

    def pads(self) -> tuple[int, int]:
        # Output (0, 0) reads input (-top, -left): a window of 1 shifted by the padding.
        top, _, left, _ = self.sides()
        return (top, left)

    def describe(self) -> str:
        fill = f" {self.value:g}" if self.mode == "constant" and self.value else ""
        padding = self.padding if isinstance(self.padding, int) else list(self.padding)
        return f"{self.mode}{fill} {padding}"  # as the spec writes it


class Identity(LayerOp):
    """Its input, unchanged: a named tap point or a placeholder (ONNX emits no node)."""

    name_prefix: ClassVar[str] = "identity"
    doc: ClassVar[str] = "the identity (no computation)"
    pointwise: ClassVar[bool] = True
    head_layer: ClassVar[bool] = True
    type: Literal["identity"] = "identity"


class Mul(LayerOp):
    """Element-wise product of two or more inputs, left to right.

    Broadcasting: every input has the output's shape, or — beside a CxHxW map — is a
    per-channel gate of C values, as a flat (C,) vector or a Cx1x1 map, which multiplies each
    channel (squeeze-and-excitation: gap -> linear -> relu -> linear -> sigmoid -> mul with
    the map). Nothing else broadcasts. The output has the largest input's shape."""

    name_prefix: ClassVar[str] = "mul"
    doc: ClassVar[str] = "element-wise product of branches (a C or Cx1x1 gate scales a CxHxW map)"
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int] = 64
    type: Literal["mul"] = "mul"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        out = max(inputs, key=lambda s: (len(s), math.prod(s)))
        for shape in inputs:
            if shape == out or (len(out) == 3 and shape in ((out[0],), (out[0], 1, 1))):
                continue
            if len(out) == 3 and (len(shape) == 1 or shape[1:] == (1, 1)):
                raise ShapeError(
                    f"a gate of {shape[0]} channels ({_shape_text(shape)}) for a {_shape_text(out)} map"
                    f" — expected {out[0]} (a gate has one value per channel)"
                )
            raise ShapeError(
                f"shape mismatch: {_shape_text(out)} vs {_shape_text(shape)}"
                " — expected equal shapes, or a C or Cx1x1 gate beside a CxHxW map"
            )
        return out


class Scale(LayerOp):
    """A learned multiplier per channel (or feature): ConvNeXt's and CaiT's layer scale.

    It starts at `init_value`, 1.0 by default: the identity, so that a scale layer changes
    nothing until it learns to. ConvNeXt starts its residual branches near zero, writing
    `init_value: 1.0e-6`."""

    name_prefix: ClassVar[str] = "scale"
    doc: ClassVar[str] = "learned per-channel multiplier (layer scale)"
    pointwise: ClassVar[bool] = True
    head_layer: ClassVar[bool] = True
    type: Literal["scale"] = "scale"
    init_value: float = Field(1.0, description="the multipliers' initial value, a number (ConvNeXt uses 1.0e-6)")

    def weights(self, inputs: list[Shape]) -> dict[str, Shape]:
        return {"weight": (inputs[0][0],)}

    def init_rule(self) -> tuple[str, dict]:
        return ("constant", {"value": self.init_value})

    def describe(self) -> str:
        return f"init {self.init_value:g}"


class Maxout(LayerOp):
    """Maxout (Goodfellow et al. 2013): the maximum over each group of `pieces` consecutive
    channels (features), C -> C / pieces. Ties share the gradient equally (PyTorch's amax)."""

    name_prefix: ClassVar[str] = "maxout"
    doc: ClassVar[str] = "maximum over groups of consecutive channels (C -> C/pieces)"
    head_layer: ClassVar[bool] = True
    type: Literal["maxout"] = "maxout"
    pieces: PosInt = Field(description="a positive integer dividing the channels: the group size")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c = inputs[0][0]
        if c % self.pieces:
            raise ShapeError(
                f"maxout of {self.pieces} pieces on {c} channels: {c} = {self.pieces}*{c // self.pieces}"
                f" + {c % self.pieces} — expected channels divisible by {self.pieces}"
            )
        return (c // self.pieces, *inputs[0][1:])

    def describe(self) -> str:
        return f"{self.pieces} pieces"


class LogSoftmax(LayerOp):
    """Log-probabilities over channels/features: x - logsumexp(x).

    Not a `makes_probabilities` layer, and kept in every backend: log-probabilities are
    logits themselves (softmax(log_softmax(x)) = softmax(x)), so CrossEntropyLoss trains on
    them unchanged and `--output probs` (a softmax added after them) gives the probabilities."""

    name_prefix: ClassVar[str] = "logsoftmax"
    doc: ClassVar[str] = "log-softmax over the class axis (log-probabilities, still valid logits)"
    head_layer: ClassVar[bool] = True
    type: Literal["log_softmax"] = "log_softmax"


CLASSES: tuple[type[LayerOp], ...] = (ConvTranspose, Upsample, Pad, Identity, Mul, Scale, Maxout, LogSoftmax)
