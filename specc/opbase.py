"""The shared base of the op table: shape types, window arithmetic, `LayerOp` and the
kernel/stride/padding geometry that convolutions and pools share. Concrete layer types are
declared in `specc.ops`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

Shape = tuple[int, ...]

PosInt = Annotated[int, Field(strict=True, gt=0)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
Pair = Union[PosInt, tuple[PosInt, PosInt]]
Padding = Union[Literal["same", "valid"], NonNegInt, tuple[NonNegInt, NonNegInt]]
Init = Literal["he", "xavier", "gaussian", "torch"]


class ShapeError(Exception):
    """A shape rule failed; the message shows the arithmetic."""


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _squash(value):
    """[3, 3] -> 3 so that canonical YAML prints square windows as one number."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        return value[0]
    if isinstance(value, list):
        return tuple(value)
    return value


def _dims(h: int, w: int) -> str:
    return f"{h}x{w}"


def _spatial(op: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(
            f"{op} needs a CxHxW feature map but gets a flat vector of {shape[0]} features"
            " — put it before the flatten/global pooling"
        )
    return shape


def _window_out(size: int, k: int, s: int, pad_total: int, dilation: int = 1, ceil: bool = False) -> tuple[int, str]:
    """Output length of a sliding window, and the arithmetic that produced it."""
    keff = dilation * (k - 1) + 1
    num = size + pad_total - keff
    padtxt = f" + {pad_total}" if pad_total else ""
    if ceil:
        # ceil(num / s) + 1, negative numerators included: a 3-wide window, stride 2, on 2
        # pixels gives ceil(-1/2) + 1 = 1 window (PyTorch's and Caffe's rule; floor gives 0).
        out = max(-(-num // s) + 1, 0)
        # Caffe/PyTorch rule: the last window must start inside the input or its left padding.
        if out > 0 and (out - 1) * s >= size + pad_total // 2:
            out -= 1
        text = f"ceil(({size}{padtxt} - {keff})/{s}) + 1 = {out}"
    else:
        out = num // s + 1 if num >= 0 else 0
        text = f"({size}{padtxt} - {keff})/{s} + 1 = {out}"
    return out, text


class LayerOp(BaseModel):
    """Base of every layer type. Subclasses set the class variables and override the rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = ""  # derived from the `type` field's literal, see below
    name_prefix: ClassVar[str] = "layer"
    doc: ClassVar[str] = ""
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int] = 1

    # -- traits: what passes and backends may assume about the layer type ---------------------
    # The field that sets the output width (channels or features), for layers with weights that
    # a transform may resize (`filters` of conv, `units` of linear); None for the others.
    width_field: ClassVar[str | None] = None
    # Acts on each position (and channel) on its own, so a spatial subsampling placed before it
    # gives the same result as after it (the pool-to-stride rewrites move strides past these).
    pointwise: ClassVar[bool] = False
    # May stand in a classifier head on a flat vector and work unchanged on a 1x1 feature map
    # (fc_to_conv carries these along when it turns linear layers into 1x1 convolutions).
    head_layer: ClassVar[bool] = False
    # Turns a CxHxW feature map into a flat vector (flatten, global pooling).
    vectorizes: ClassVar[bool] = False
    # Does something only in training; inference reads its input unchanged (dropout).
    train_only: ClassVar[bool] = False
    # A rectifier: clips negative values (so it must not be applied to class scores).
    rectifier: ClassVar[bool] = False
    # An activation that conv/linear layers may fuse (`activation: <kind>`).
    fusable: ClassVar[bool] = False
    # Joins its inputs along channels (concat): the channels of the result come from several layers.
    joins_channels: ClassVar[bool] = False
    # Normalises each channel with statistics (batch_norm): in inference a per-channel affine map,
    # which an affine layer before it (one with a `width_field`) can absorb.
    normalizes: ClassVar[bool] = False
    # Turns class scores into probabilities over the class axis (softmax): what it reads is still
    # the class scores, and backends drop it when asked for logits.
    makes_probabilities: ClassVar[bool] = False
    # State entries of `weights()` that are statistics, not trained parameters.
    buffers: ClassVar[tuple[str, ...]] = ()
    # Pools a feature map into a feature map (max/avg/lp pools, the adaptive pools): what the pool
    # rewrites look at. Global pools, which end in a vector, are heads (`vectorizes`) instead.
    pooling: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        type_field = cls.model_fields.get("type")
        if type_field is not None:
            cls.kind = type_field.default  # one spelling of the type name, not two

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return inputs[0]

    def weights(self, inputs: list[Shape]) -> dict[str, Shape]:
        """The layer's state, `{suffix: shape}` in PyTorch's names and layouts (`weight` (out,
        in/groups, kh, kw), `bias`, `running_mean`, ...); the checkpoint key of an entry is
        `<layer>.<suffix>`. Every backend, checkpoint check and remapping reads this."""
        return {}

    def init_rule(self) -> tuple[str, dict] | None:
        """How the state is initialised: (rule, keyword arguments), None without state.

        Rules: `he`, `xavier`, `gaussian` (std), `torch` for a weight and its bias (see
        `specc_torch.init`); `norm` for normalisation state (scale 1, shift 0, running mean 0,
        variance 1); `constant` (value) for every entry."""
        return None

    def channel_layout(self, inputs: list[Shape]) -> tuple[Shape, Shape]:
        """Where the output channels sit in `weight` (layers with a `width_field`): a view of
        the weight, and the shape a per-output-channel vector takes to broadcast over that
        view — what folding a normalisation into the layer scales. By default axis 0 (conv's
        and linear's (out, in, ...) layout); a transposed convolution overrides it."""
        w = self.weights(inputs)["weight"]
        return w, (w[0],) + (1,) * (len(w) - 1)

    def param_count(self, inputs: list[Shape]) -> int:
        """Trained parameters: the entries of `weights()` that are not buffers."""
        count = 0
        for suffix, shape in self.weights(inputs).items():
            if suffix not in self.buffers:
                size = 1
                for dim in shape:
                    size *= dim
                count += size
        return count

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return 0

    def window(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        """(effective kernel h, w, stride h, w) for receptive-field arithmetic."""
        return (1, 1, 1, 1)

    def activation_op(self) -> LayerOp | None:
        """A fused activation as a standalone layer; None (layers without one)."""
        return None

    def without_activation(self) -> LayerOp:
        """The layer with its fused activation taken off (itself when it has none)."""
        return self

    def pads(self) -> tuple[int, int]:
        """Symmetric padding per side (height, width) of a sliding window; none by default."""
        return (0, 0)

    def describe(self) -> str:
        """A short human description for the summary (`3x3/2 same`)."""
        return ""

    def params(self) -> dict:
        """The op's parameters as plain data, all fields included."""
        return self.model_dump(mode="json")


class _Windowed(LayerOp):
    """Shared geometry of convolutions and pools: kernel, stride, padding."""

    kernel: Pair = Field(description="a positive integer or [height, width]")
    stride: Pair = Field(1, description="a positive integer or [height, width]")
    padding: Padding = Field("valid", description="'same', 'valid', an integer or [height, width]")

    @field_validator("kernel", "stride", "padding", mode="after")
    @classmethod
    def _canonical_pair(cls, value):
        return _squash(value)

    def kernel_hw(self) -> tuple[int, int]:
        return _pair(self.kernel)

    def stride_hw(self) -> tuple[int, int]:
        return _pair(self.stride)

    def dilation_hw(self) -> tuple[int, int]:
        return (1, 1)

    def rounds_up(self) -> bool:
        """Caffe-style ceil rounding of the output size (pools only)."""
        return False

    def pads(self) -> tuple[int, int]:
        """Symmetric padding per side (height, width); 'same' pads (k_eff - 1) / 2."""
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            (kh, kw), (dh, dw) = self.kernel_hw(), self.dilation_hw()
            return ((dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2)
        return _pair(self.padding)

    def _check_same(self, label: str) -> None:
        if self.padding != "same":
            return
        (kh, kw), (dh, dw) = self.kernel_hw(), self.dilation_hw()
        if (dh * (kh - 1)) % 2 or (dw * (kw - 1)) % 2:
            raise ShapeError(
                f"'same' padding needs an odd kernel, {label} has {_dims(kh, kw)}"
                " — give an explicit padding or use 'valid'"
            )

    def _spatial_out(self, label: str, h: int, w: int) -> tuple[int, int]:
        self._check_same(label)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_hw(),
            self.stride_hw(),
            self.pads(),
            self.dilation_hw(),
        )
        ho, th = _window_out(h, kh, sh, 2 * ph, dh, self.rounds_up())
        wo, tw = _window_out(w, kw, sw, 2 * pw, dw, self.rounds_up())
        if ho <= 0 or wo <= 0:
            pad_word = self.padding if isinstance(self.padding, str) else f"padding {self.padding}"
            text = th if ho <= 0 else tw
            raise ShapeError(
                f"{_dims(kh, kw)} {pad_word} {label} on a {_dims(h, w)} input: {text}"
                " — expected an output of at least 1x1"
            )
        return ho, wo

    def window(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_hw(), self.stride_hw(), self.dilation_hw()
        return (dh * (kh - 1) + 1, dw * (kw - 1) + 1, sh, sw)

    def describe(self) -> str:
        kh, kw = self.kernel_hw()
        sh, sw = self.stride_hw()
        stride = "" if (sh, sw) == (1, 1) else (f"/{sh}" if sh == sw else f"/{sh}x{sw}")
        pad = self.padding if isinstance(self.padding, str) else f"pad {self.padding}"
        return f"{_dims(kh, kw)}{stride} {pad}"


class _Activation(LayerOp):
    """A pointwise activation: unchanged shape, no weights, fusable into conv/linear."""

    pointwise: ClassVar[bool] = True
    head_layer: ClassVar[bool] = True
    fusable: ClassVar[bool] = True
