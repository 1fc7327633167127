"""Normalisations that use the statistics of each sample (and so stay data-dependent in
inference, unlike batch_norm): local response normalisation across channels (AlexNet), group
normalisation, instance normalisation and layer normalisation over channels (ConvNeXt).

None of them has the `normalizes` trait: that trait promises an inference-time affine map
that `fold_batch_norm` may fold into the layer before, and these compute their scale from
the sample itself. Their backward (`specc.backward_norm`) is the full derivative.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from specc.opbase import LayerOp, PosInt, Shape, ShapeError, _spatial


class LocalResponseNorm(LayerOp):
    """Local response normalisation across channels (Krizhevsky et al. 2012), as PyTorch's
    LocalResponseNorm: b_c = a_c / (k + alpha / size * sum of a_j^2 over `size` channels around
    c)^beta, the window reaching size // 2 channels below c and (size - 1) // 2 above."""

    name_prefix: ClassVar[str] = "lrn"
    doc: ClassVar[str] = "local response normalisation across channels"
    # Each position on its own (channels mix, positions do not): a stride commutes with it.
    pointwise: ClassVar[bool] = True
    type: Literal["local_response_norm"] = "local_response_norm"
    size: PosInt = Field(description="a positive integer (channels in the window; AlexNet: 5)")
    alpha: float = Field(1e-4, ge=0, strict=True, description="a number >= 0 (the scale; AlexNet: 1e-4)")
    beta: float = Field(0.75, ge=0, strict=True, description="a number >= 0 (the exponent; AlexNet: 0.75)")
    k: float = Field(1.0, gt=0, strict=True, description="a positive number (the additive constant; AlexNet: 2)")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return _spatial("local_response_norm", inputs[0])

    def describe(self) -> str:
        return f"size={self.size} alpha={self.alpha:g} beta={self.beta:g} k={self.k:g}"


def lrn_band(channels: int, size: int) -> list[list[float]]:
    """(C, C): row c is 1 on the channels of c's window (size // 2 below, (size - 1) // 2 above)."""
    return [
        [1.0 if c - size // 2 <= j <= c + (size - 1) // 2 else 0.0 for j in range(channels)] for c in range(channels)
    ]


class _SampleNorm(LayerOp):
    """Shared by group, instance and layer norm: eps, an optional per-channel affine map."""

    eps: float = Field(1e-5, gt=0, strict=True, description="a small positive number")
    affine: bool = Field(True, description="true for a learned per-channel scale and shift, false for none")

    def weights(self, inputs: list[Shape]) -> dict[str, Shape]:
        c = (inputs[0][0],)
        return {"weight": c, "bias": c} if self.affine else {}

    def init_rule(self) -> tuple[str, dict] | None:
        return ("norm", {}) if self.affine else None

    def _refuse_single(self, what: str, expected: str) -> None:
        raise ShapeError(f"{what} = 1 value, so its output would be the bias alone — expected {expected}")


class GroupNorm(_SampleNorm):
    """Group normalisation (Wu & He 2018): the channels split into `groups`, each normalised by
    the mean and variance of its channels over the whole map, per sample; then the per-channel
    affine map. On a flat vector the groups are groups of features."""

    name_prefix: ClassVar[str] = "gn"
    doc: ClassVar[str] = "group normalisation (per-sample statistics of channel groups)"
    head_layer: ClassVar[bool] = True
    type: Literal["group_norm"] = "group_norm"
    groups: PosInt = Field(description="a positive integer dividing the channels")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = inputs[0]
        c = shape[0]
        if c % self.groups:
            raise ShapeError(
                f"groups={self.groups} must divide the {c} channels ({c} / {self.groups} = {c / self.groups:.3g})"
            )
        positions = shape[1] * shape[2] if len(shape) == 3 else 1
        if (c // self.groups) * positions < 2:
            self._refuse_single(
                f"each of the {self.groups} groups normalises {c // self.groups} channel x {positions} position",
                "at least 2 values per group",
            )
        return shape

    def describe(self) -> str:
        return f"{self.groups} groups"


class InstanceNorm(_SampleNorm):
    """Instance normalisation (Ulyanov et al. 2016): each channel of each sample normalised by
    its own mean and variance over the map — in inference too (PyTorch's InstanceNorm2d with
    its default track_running_stats=False); affine off by default, as in PyTorch."""

    name_prefix: ClassVar[str] = "inorm"
    doc: ClassVar[str] = "instance normalisation (per-sample, per-channel statistics)"
    type: Literal["instance_norm"] = "instance_norm"
    affine: bool = Field(False, description="true for a learned per-channel scale and shift (PyTorch's default false)")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        _, h, w = _spatial("instance_norm", inputs[0])
        if h * w < 2:
            self._refuse_single("on a 1x1 map each channel normalises 1x1", "a map of at least 2 positions")
        return inputs[0]


class LayerNorm(_SampleNorm):
    """Layer normalisation over channels, as ConvNeXt uses it: at each position the C values
    are normalised by their mean and variance, then the per-channel affine map. On a flat
    vector it is ordinary layer normalisation over the features."""

    name_prefix: ClassVar[str] = "ln"
    doc: ClassVar[str] = "layer normalisation over channels at each position"
    pointwise: ClassVar[bool] = True  # each position on its own: a stride commutes with it
    head_layer: ClassVar[bool] = True
    type: Literal["layer_norm"] = "layer_norm"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        if inputs[0][0] < 2:
            self._refuse_single("over 1 channel each position normalises 1", "at least 2 channels")
        return inputs[0]


CLASSES: tuple[type[LayerOp], ...] = (LocalResponseNorm, GroupNorm, InstanceNorm, LayerNorm)
