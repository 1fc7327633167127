"""THE op table: one frozen pydantic class per layer type.

Each class declares, once, everything every pass and backend needs to know about a layer
type: its parameter schema (the fields, whose descriptions double as the "expected" text of
validation errors), its shape rule, its parameter count, its MACs and its receptive-field
window. Backends keep one entry per type in their own tables; a test asserts they cover
`OPS` exactly.

Shapes are per-sample tuples: `(C, H, W)` for feature maps, `(F,)` for flat vectors.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal, Union

from pydantic import Field, field_validator

from specc.fusion import activation_text, describe_fusable, fused_activation_type, fused_op
from specc.opbase import (  # noqa: F401 - re-exported: the op table's public vocabulary
    Init,
    LayerOp,
    NonNegInt,
    Padding,
    Pair,
    PosInt,
    Shape,
    ShapeError,
    _Activation,
    _dims,
    _pair,
    _spatial,
    _squash,
    _window_out,
    _Windowed,
)
from specc.ops_activations import CLASSES as ACTIVATION_CLASSES
from specc.ops_activations import LeakyReLU, PReLU, ReLU
from specc.ops_norm import CLASSES as NORM_CLASSES
from specc.ops_pooling import CLASSES as POOLING_CLASSES

# The activations a conv/linear layer may fuse (`specc.fusion`): a name, whose parameters come
# from the layer's fields of the same name (`slope`), or a mapping `{type: elu, alpha: 0.5}`.
FUSABLE: dict[str, type[LayerOp]] = {cls.kind: cls for cls in (ReLU, LeakyReLU, *ACTIVATION_CLASSES) if cls.fusable}
if TYPE_CHECKING:
    FusedActivation = Union[str, LayerOp]
else:
    FusedActivation = fused_activation_type(FUSABLE, layer_fields=("slope",))
_ACTIVATION_TEXT = describe_fusable(FUSABLE)


class _Activated(LayerOp):
    """A layer with weights, an optional fused activation and an initialisation rule. The
    fields (`activation`, `slope`, `init`, `init_std`) are declared by each subclass, after
    its own, so that canonical YAML lists them last."""

    if TYPE_CHECKING:  # declared as fields by the subclasses
        activation: str | LayerOp
        slope: float
        init: str
        init_std: float

    def activation_op(self) -> LayerOp | None:
        """The fused activation as a standalone layer (None for `activation: none`)."""
        return fused_op(self, self.activation, FUSABLE)

    def activation_text(self) -> str:
        """The fused activation for the summary (`relu`, `elu(alpha=0.5)`; empty for none)."""
        return activation_text(self.activation)

    def without_activation(self) -> LayerOp:
        """The same layer with `activation: none` (the form backends see after lowering)."""
        return self if self.activation == "none" else self.model_copy(update={"activation": "none"})

    def init_rule(self) -> tuple[str, dict]:
        kwargs: dict = {}
        act = self.activation_op()
        if self.init == "he" and act is not None and "slope" in type(act).model_fields:
            kwargs["slope"] = act.slope  # type: ignore[attr-defined]  # He et al.'s gain for a leaky rectifier
        elif self.init == "gaussian":
            kwargs["std"] = self.init_std
        return self.init, kwargs


class Conv(_Activated, _Windowed):
    """2-D convolution, optionally followed by its activation (the paper's "conv ReLU")."""

    name_prefix: ClassVar[str] = "conv"
    doc: ClassVar[str] = "2-D convolution with an optional fused activation"

    width_field: ClassVar[str | None] = "filters"
    type: Literal["conv"] = "conv"
    filters: PosInt = Field(description="a positive integer (output channels)")
    dilation: Pair = Field(1, description="a positive integer or [height, width]")
    groups: PosInt = Field(1, description="a positive integer dividing both channel counts")
    bias: bool = Field(True, description="true or false")
    activation: FusedActivation = Field("none", description=_ACTIVATION_TEXT)
    slope: float = Field(0.01, ge=0, description="the leaky_relu negative slope, a number >= 0")
    init: Init = Field("he", description="he, xavier, gaussian or torch")
    init_std: float = Field(0.01, gt=0, description="the gaussian init's standard deviation (> 0)")

    @field_validator("dilation", mode="after")
    @classmethod
    def _canonical_dilation(cls, value):
        return _squash(value)

    def dilation_hw(self) -> tuple[int, int]:
        return _pair(self.dilation)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, h, w = _spatial("conv", inputs[0])
        if c % self.groups or self.filters % self.groups:
            raise ShapeError(
                f"groups={self.groups} must divide both the input channels ({c}) and filters ({self.filters})"
            )
        ho, wo = self._spatial_out("conv", h, w)
        return (self.filters, ho, wo)

    def weights(self, inputs: list[Shape]) -> dict[str, Shape]:
        kh, kw = self.kernel_hw()
        entries = {"weight": (self.filters, inputs[0][0] // self.groups, kh, kw)}
        return entries | ({"bias": (self.filters,)} if self.bias else {})

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        kh, kw = self.kernel_hw()
        cout, ho, wo = output
        return cout * ho * wo * (inputs[0][0] // self.groups) * kh * kw

    def describe(self) -> str:
        act = f" {self.activation_text()}" if self.activation_text() else ""
        return f"{super().describe()}{act}"


class _Pool(_Windowed):
    pooling: ClassVar[bool] = True
    stride: Pair | None = Field(None, description="a positive integer or [height, width] (default: the kernel)")
    ceil_mode: bool = Field(False, description="true for Caffe's ceil rounding, false for floor")

    def stride_hw(self) -> tuple[int, int]:
        return _pair(self.kernel if self.stride is None else self.stride)

    def rounds_up(self) -> bool:
        return self.ceil_mode

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, h, w = _spatial(self.kind, inputs[0])
        (kh, kw), (ph, pw) = self.kernel_hw(), self.pads()
        if ph * 2 > kh or pw * 2 > kw:
            raise ShapeError(
                f"padding {ph}x{pw} is more than half the {_dims(kh, kw)} kernel"
                " — pooling windows would see only padding"
            )
        if not self.ceil_mode and (kh > h + 2 * ph or kw > w + 2 * pw):
            raise ShapeError(
                f"{_dims(kh, kw)} {self.kind} is larger than its {_dims(h, w)} input"
                f"{' (padded ' + _dims(h + 2 * ph, w + 2 * pw) + ')' if ph or pw else ''}"
            )
        ho, wo = self._spatial_out(self.kind, h, w)
        return (c, ho, wo)

    def describe(self) -> str:
        return super().describe() + (" ceil" if self.ceil_mode else "")


class MaxPool(_Pool):
    """Max pooling."""

    name_prefix: ClassVar[str] = "pool"
    doc: ClassVar[str] = "max pooling"
    type: Literal["max_pool"] = "max_pool"


class AvgPool(_Pool):
    """Average pooling; padded zeros are excluded from the average unless asked."""

    name_prefix: ClassVar[str] = "avgpool"
    doc: ClassVar[str] = "average pooling"
    type: Literal["avg_pool"] = "avg_pool"
    count_include_pad: bool = Field(False, description="true to count padded zeros (Caffe), false to exclude them")


class GlobalAvgPool(LayerOp):
    """Average over the whole feature map: CxHxW -> C (the paper's "global averaging")."""

    name_prefix: ClassVar[str] = "gap"
    doc: ClassVar[str] = "global average pooling to a C-vector"
    vectorizes: ClassVar[bool] = True
    type: Literal["global_avg_pool"] = "global_avg_pool"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, _, _ = _spatial("global_avg_pool", inputs[0])
        return (c,)

    def window(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        _, h, w = inputs[0]
        return (h, w, h, w)


class Dropout(LayerOp):
    """Dropout; a training-only layer that backends drop for deployment."""

    name_prefix: ClassVar[str] = "drop"
    doc: ClassVar[str] = "dropout (training only)"
    head_layer: ClassVar[bool] = True
    train_only: ClassVar[bool] = True
    type: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0.0, lt=1.0, description="a probability in [0, 1)")
    spatial: bool = Field(
        False, description="true to drop whole channels of a CxHxW map (nn.Dropout2d), false for single values"
    )

    def output_shape(self, inputs: list[Shape]) -> Shape:
        if self.spatial:
            _spatial("spatial dropout", inputs[0])  # drops channels: a map, not a flat vector
        return inputs[0]

    def describe(self) -> str:
        return f"p={self.rate:g}{' spatial' if self.spatial else ''}"


class BatchNorm(LayerOp):
    """Batch normalisation over channels (or features of a flat vector)."""

    name_prefix: ClassVar[str] = "bn"
    doc: ClassVar[str] = "batch normalisation"
    pointwise: ClassVar[bool] = True
    head_layer: ClassVar[bool] = True
    normalizes: ClassVar[bool] = True
    buffers: ClassVar[tuple[str, ...]] = ("running_mean", "running_var")
    type: Literal["batch_norm"] = "batch_norm"
    eps: float = Field(1e-5, gt=0, description="a small positive number")
    momentum: float = Field(0.1, gt=0, le=1, description="a number in (0, 1]")
    affine: bool = Field(True, description="true or false")

    def weights(self, inputs: list[Shape]) -> dict[str, Shape]:
        c = (inputs[0][0],)
        scale_shift = {"weight": c, "bias": c} if self.affine else {}
        return scale_shift | {"running_mean": c, "running_var": c}

    def init_rule(self) -> tuple[str, dict]:
        return ("norm", {})


class Flatten(LayerOp):
    name_prefix: ClassVar[str] = "flatten"
    doc: ClassVar[str] = "flatten CxHxW to a vector"
    vectorizes: ClassVar[bool] = True
    type: Literal["flatten"] = "flatten"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return (math.prod(inputs[0]),)

    def window(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        if len(inputs[0]) == 3:
            _, h, w = inputs[0]
            return (h, w, h, w)
        return (1, 1, 1, 1)


class Linear(_Activated):
    """Fully connected layer on a flat vector."""

    name_prefix: ClassVar[str] = "fc"
    doc: ClassVar[str] = "fully connected layer"
    width_field: ClassVar[str | None] = "units"
    head_layer: ClassVar[bool] = True
    type: Literal["linear"] = "linear"
    units: PosInt = Field(description="a positive integer (output features)")
    bias: bool = Field(True, description="true or false")
    activation: FusedActivation = Field("none", description=_ACTIVATION_TEXT)
    slope: float = Field(0.01, ge=0, description="the leaky_relu negative slope, a number >= 0")
    init: Init = Field("he", description="he, xavier, gaussian or torch")
    init_std: float = Field(0.01, gt=0, description="the gaussian init's standard deviation (> 0)")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        if len(inputs[0]) != 1:
            c, h, w = inputs[0]
            raise ShapeError(
                f"linear needs a flat vector but gets a {c}x{h}x{w} feature map"
                " — add a flatten or global_avg_pool layer before it"
            )
        return (self.units,)

    def weights(self, inputs: list[Shape]) -> dict[str, Shape]:
        entries = {"weight": (self.units, inputs[0][0])}
        return entries | ({"bias": (self.units,)} if self.bias else {})

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return inputs[0][0] * self.units

    def describe(self) -> str:
        return self.activation_text()


class Softmax(LayerOp):
    """Softmax over channels/features; dropped when a backend is asked for logits."""

    name_prefix: ClassVar[str] = "softmax"
    doc: ClassVar[str] = "softmax over the class axis"
    head_layer: ClassVar[bool] = True
    makes_probabilities: ClassVar[bool] = True
    type: Literal["softmax"] = "softmax"


class Add(LayerOp):
    """Element-wise sum of two or more branches of the same shape (residual connections)."""

    name_prefix: ClassVar[str] = "add"
    doc: ClassVar[str] = "element-wise sum of branches"
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int] = 64
    type: Literal["add"] = "add"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        first = inputs[0]
        for shape in inputs[1:]:
            if shape != first:
                if len(shape) == len(first) == 3 and shape[0] != first[0]:
                    raise ShapeError(
                        f"channel mismatch: inputs have {first[0]} and {shape[0]} channels"
                        f" ({'x'.join(map(str, first))} vs {'x'.join(map(str, shape))})"
                        " — expected equal shapes"
                    )
                raise ShapeError(
                    f"shape mismatch: {'x'.join(map(str, first))} vs {'x'.join(map(str, shape))}"
                    " — expected equal shapes"
                )
        return first


class Concat(LayerOp):
    """Concatenation along channels (features for flat vectors)."""

    name_prefix: ClassVar[str] = "concat"
    doc: ClassVar[str] = "channel concatenation of branches"
    joins_channels: ClassVar[bool] = True
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int] = 64
    type: Literal["concat"] = "concat"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        first = inputs[0]
        for shape in inputs[1:]:
            if len(shape) != len(first) or shape[1:] != first[1:]:
                raise ShapeError(
                    f"concat needs equal spatial sizes: {'x'.join(map(str, first))} vs {'x'.join(map(str, shape))}"
                )
        return (sum(s[0] for s in inputs),) + tuple(first[1:])


# The structure family subclasses `_Activated` (conv_transpose), so it is imported after it.
from specc.ops_structure import CLASSES as STRUCTURE_CLASSES  # noqa: E402

OPS: dict[str, type[LayerOp]] = {
    cls.kind: cls
    for cls in (
        Conv,
        MaxPool,
        AvgPool,
        GlobalAvgPool,
        Dropout,
        ReLU,
        LeakyReLU,
        PReLU,
        BatchNorm,
        Flatten,
        Linear,
        Softmax,
        Add,
        Concat,
        *POOLING_CLASSES,
        *NORM_CLASSES,
        *ACTIVATION_CLASSES,
        *STRUCTURE_CLASSES,
    )
}

AnyOp = Union[tuple(OPS.values())]  # type: ignore[valid-type]


def field_description(op_type: str, field_name: str) -> str:
    """The "expected" text of one field of a layer type (empty when unknown)."""
    cls = OPS.get(op_type)
    if cls is None or field_name not in cls.model_fields:
        return ""
    return cls.model_fields[field_name].description or ""
