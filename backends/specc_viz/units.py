"""Which units a visualization starts from, and the seed each one puts on its layer.

A unit is a whole channel (`Channel(c)`), one position of a channel (`Position(c, y, x)`),
or, on a flat layer such as the logits, one feature (`Channel(k)`: a class is a channel of
the logits). Following the paper, the seed keeps the unit's own activation and sets every
other activation of the layer to zero (`seed="activation"`); `seed="one"` puts 1 on the
unit instead (what a start from a zero input needs, where activations carry no signal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SEEDS = ("activation", "one")


@dataclass(frozen=True)
class Channel:
    """A whole channel of a feature map, or one feature of a flat layer (a class logit)."""

    channel: int

    def label(self) -> str:
        return f"c{self.channel}"


@dataclass(frozen=True)
class Position:
    """One unit of a feature map: channel `channel` at row `y`, column `x`."""

    channel: int
    y: int
    x: int

    def label(self) -> str:
        return f"c{self.channel}@{self.y},{self.x}"


Unit = Channel | Position


def parse_unit(text: str) -> Unit:
    """'C' -> Channel(C); 'C,Y,X' -> Position(C, Y, X). Raises ValueError with the reason."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"unit {text!r}: expected C (a channel) or C,Y,X (a position), as integers") from None
    if len(values) == 1:
        return Channel(values[0])
    if len(values) == 3:
        return Position(*values)
    raise ValueError(f"unit {text!r}: expected C (a channel) or C,Y,X (a position), not {len(values)} numbers")


def as_unit(value) -> Unit:
    if isinstance(value, (Channel, Position)):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Channel(value)
    if isinstance(value, tuple) and len(value) == 3:
        return Position(*map(int, value))
    return parse_unit(value)


def check_unit(unit: Unit, shape: tuple[int, ...], layer: str) -> None:
    """Refuse a unit outside the layer's per-sample `shape` ((C, H, W) or (F,))."""
    if not 0 <= unit.channel < shape[0]:
        what = "channels" if len(shape) == 3 else "features"
        raise ValueError(f"unit {unit.label()}: layer '{layer}' has {shape[0]} {what} (0..{shape[0] - 1})")
    if isinstance(unit, Position):
        if len(shape) != 3:
            raise ValueError(f"unit {unit.label()}: layer '{layer}' is a flat vector — give a feature index only")
        _, h, w = shape
        if not (0 <= unit.y < h and 0 <= unit.x < w):
            raise ValueError(f"unit {unit.label()}: layer '{layer}' is {h}x{w} (y 0..{h - 1}, x 0..{w - 1})")


def unit_mask(unit: Unit, shape: tuple[int, ...]) -> torch.Tensor:
    """A float mask of the layer's per-sample shape: 1 on the unit, 0 elsewhere."""
    mask = torch.zeros(shape)
    if isinstance(unit, Position):
        mask[unit.channel, unit.y, unit.x] = 1.0
    else:
        mask[unit.channel] = 1.0
    return mask


def make_seeds(activation: torch.Tensor, units: list[Unit], rows: torch.Tensor, seed: str) -> torch.Tensor:
    """The seeds of `len(rows)` backward passes: row r starts unit `units[r]` from image
    `rows[r]` of `activation` (B, ...). Returns (len(rows), ...) of the layer's shape."""
    if seed not in SEEDS:
        raise ValueError(f"seed {seed!r}: expected one of {', '.join(SEEDS)}")
    shape = tuple(activation.shape[1:])
    masks = torch.stack([unit_mask(u, shape) for u in units]).to(activation.dtype)  # (R, ...)
    if seed == "one":
        return masks
    return masks * activation.detach()[rows]


def top_channels(activation: torch.Tensor, n: int, *, by: str = "max") -> torch.Tensor:
    """The `n` most active channels of each image: (B, n) indices, most active first.
    `by` is "max" (the strongest position) or "mean" (over the whole map)."""
    if activation.dim() != 4:
        flat = activation  # (B, F): a feature is its own score
    elif by == "max":
        flat = activation.amax(dim=(2, 3))
    elif by == "mean":
        flat = activation.mean(dim=(2, 3))
    else:
        raise ValueError(f"by={by!r}: expected max or mean")
    n = min(n, flat.shape[1])
    return torch.topk(flat, n, dim=1).indices
