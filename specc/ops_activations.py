"""The activation family of the op table: ReLU, leaky ReLU and PReLU (the paper's rectifiers),
and the pointwise nonlinearities beyond them (`CLASSES`).

Each is a standalone layer (`{type: gelu}`) and may be a conv/linear layer's fused
`activation:` (`activation: gelu`, or `activation: {type: elu, alpha: 0.5}` with parameters;
see `specc.fusion`). The parameters and their defaults are PyTorch's (`torch.nn.ELU(alpha=1.0)`,
...), so a spec reads like the module it becomes. None has weights; the shape is unchanged.

MACs: 0, as for relu — the summary counts the multiply-accumulates of convolutions and linear
layers, which dominate; a pointwise activation costs a few operations per element.

Only relu6 is a `rectifier` (it clips every negative value to 0, so lint warns when it ends
the network); the others let negative values through (or saturate them at another value).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from specc.opbase import LayerOp, Shape, _Activation


# -- the rectifiers of the paper and their parametric form -----------------------------------
class ReLU(_Activation):
    name_prefix: ClassVar[str] = "relu"
    doc: ClassVar[str] = "rectified linear unit"
    rectifier: ClassVar[bool] = True
    type: Literal["relu"] = "relu"


class LeakyReLU(_Activation):
    name_prefix: ClassVar[str] = "lrelu"
    doc: ClassVar[str] = "leaky rectified linear unit"
    rectifier: ClassVar[bool] = True
    type: Literal["leaky_relu"] = "leaky_relu"
    slope: float = Field(0.01, ge=0, description="the negative slope, a number >= 0")

    def describe(self) -> str:
        return f"slope={self.slope:g}"


class PReLU(LayerOp):
    """Parametric ReLU: max(0, x) + a * min(0, x), with the negative slope `a` learned, one
    per channel (or feature) or one shared by all (He et al. 2015)."""

    name_prefix: ClassVar[str] = "prelu"
    doc: ClassVar[str] = "parametric ReLU (learned negative slope)"
    pointwise: ClassVar[bool] = True
    head_layer: ClassVar[bool] = True
    type: Literal["prelu"] = "prelu"
    shared: bool = Field(False, description="true for one slope shared by all channels, false for one per channel")
    init_slope: float = Field(0.25, description="the slopes' initial value, a number (PyTorch's default 0.25)")

    def weights(self, inputs: list[Shape]) -> dict[str, Shape]:
        return {"weight": (1 if self.shared else inputs[0][0],)}

    def init_rule(self) -> tuple[str, dict]:
        return ("constant", {"value": self.init_slope})

    def describe(self) -> str:
        return "shared slope" if self.shared else "slope per channel"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""

    name_prefix: ClassVar[str] = "sigmoid"
    doc: ClassVar[str] = "logistic sigmoid 1 / (1 + exp(-x))"
    type: Literal["sigmoid"] = "sigmoid"


class Tanh(_Activation):
    name_prefix: ClassVar[str] = "tanh"
    doc: ClassVar[str] = "hyperbolic tangent"
    type: Literal["tanh"] = "tanh"


class ReLU6(_Activation):
    """min(max(0, x), 6) (MobileNet)."""

    name_prefix: ClassVar[str] = "relu6_"  # relu6_1, not relu61
    doc: ClassVar[str] = "ReLU capped at 6: min(max(0, x), 6)"
    rectifier: ClassVar[bool] = True
    type: Literal["relu6"] = "relu6"


class Hardtanh(_Activation):
    """x clipped to [min_val, max_val]."""

    name_prefix: ClassVar[str] = "hardtanh"
    doc: ClassVar[str] = "x clipped to [min_val, max_val]"
    type: Literal["hardtanh"] = "hardtanh"
    min_val: float = Field(-1.0, allow_inf_nan=False, description="the lower bound, a number below max_val")
    max_val: float = Field(
        1.0, allow_inf_nan=False, validate_default=True, description="the upper bound, a number above min_val"
    )

    @field_validator("max_val", mode="after")
    @classmethod
    def _above_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_val")
        if low is not None and value <= low:
            raise PydanticCustomError("bounds", "input should be greater than min_val ({low})", {"low": low})
        return value

    def describe(self) -> str:
        return f"[{self.min_val:g}, {self.max_val:g}]"


class ELU(_Activation):
    """x for x > 0, alpha * (exp(x) - 1) otherwise (Clevert et al. 2016)."""

    name_prefix: ClassVar[str] = "elu"
    doc: ClassVar[str] = "exponential linear unit: x, or alpha * (exp(x) - 1) for x <= 0"
    type: Literal["elu"] = "elu"
    alpha: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="a number >= 0 (elu(x) tends to -alpha for very negative x)"
    )

    def describe(self) -> str:
        return f"alpha={self.alpha:g}"


class SELU(_Activation):
    """scale * elu(x, alpha) with the self-normalising constants (Klambauer et al. 2017)."""

    name_prefix: ClassVar[str] = "selu"
    doc: ClassVar[str] = "scaled ELU with the self-normalising constants"
    type: Literal["selu"] = "selu"


class GELU(_Activation):
    """x * Phi(x), Phi the standard normal CDF; or its tanh approximation."""

    name_prefix: ClassVar[str] = "gelu"
    doc: ClassVar[str] = "Gaussian error linear unit x * Phi(x)"
    type: Literal["gelu"] = "gelu"
    approximate: Literal["none", "tanh"] = Field(
        "none", description="none (exact, with erf) or tanh (the tanh approximation)"
    )

    def describe(self) -> str:
        return "" if self.approximate == "none" else "tanh approximation"


class SiLU(_Activation):
    """x * sigmoid(x) (swish)."""

    name_prefix: ClassVar[str] = "silu"
    doc: ClassVar[str] = "sigmoid linear unit (swish) x * sigmoid(x)"
    type: Literal["silu"] = "silu"


class Mish(_Activation):
    """x * tanh(softplus(x)) (Misra 2019)."""

    name_prefix: ClassVar[str] = "mish"
    doc: ClassVar[str] = "x * tanh(softplus(x))"
    type: Literal["mish"] = "mish"


class Hardswish(_Activation):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""

    name_prefix: ClassVar[str] = "hardswish"
    doc: ClassVar[str] = "x * relu6(x + 3) / 6"
    type: Literal["hardswish"] = "hardswish"


class Hardsigmoid(_Activation):
    """relu6(x + 3) / 6, i.e. x / 6 + 1/2 clipped to [0, 1] (PyTorch's; not Keras' x / 5)."""

    name_prefix: ClassVar[str] = "hardsigmoid"
    doc: ClassVar[str] = "x / 6 + 1/2 clipped to [0, 1]"
    type: Literal["hardsigmoid"] = "hardsigmoid"


class Softplus(_Activation):
    """log(1 + exp(beta * x)) / beta; x itself where beta * x > threshold (PyTorch's switch)."""

    name_prefix: ClassVar[str] = "softplus"
    doc: ClassVar[str] = "log(1 + exp(beta * x)) / beta, linear above the threshold"
    type: Literal["softplus"] = "softplus"
    beta: float = Field(1.0, gt=0, allow_inf_nan=False, description="the sharpness, a number > 0")
    threshold: float = Field(
        20.0, allow_inf_nan=False, description="a number: where beta * x exceeds it, the output is x itself"
    )

    def describe(self) -> str:
        return f"beta={self.beta:g} threshold={self.threshold:g}"


CLASSES: tuple[type[LayerOp], ...] = (
    Sigmoid,
    Tanh,
    ReLU6,
    Hardtanh,
    ELU,
    SELU,
    GELU,
    SiLU,
    Mish,
    Hardswish,
    Hardsigmoid,
    Softplus,
)
