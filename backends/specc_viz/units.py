"""Which units a visualization starts from, and the seed each one puts on its layer.

A unit is a whole channel (`Channel(c)`), one position of a channel (`Position(c, y, x)`),
or, on a flat layer such as the logits, one feature (`Channel(k)`: a class is a channel of
the logits). Following the paper, the seed of a hidden unit keeps the unit's own activation
and sets every other activation of the layer to zero (`seed="activation"`); `seed="one"` puts
1 on the unit instead — what a class needs (the gradient of its score, as Captum computes it)
and what a start from a zero input needs, where activations carry no signal. `seed="auto"`
(the default) is "one" at the logits and "activation" elsewhere.
"""

from __future__ import annotations

import torch

from specc.units import Channel, Position, Unit, as_unit, check_unit, parse_unit  # noqa: F401 - re-exported

SEEDS = ("auto", "activation", "one")


def resolve_seed(seed: str, starts_at_logits: bool) -> str:
    """`auto`: a class (a unit of the logits) starts from 1 — the paper's and Captum's
    convention, so a class with a negative or zero score still gets its map — and a channel of
    a hidden layer from its activation (the paper's deconvnet seed)."""
    if seed not in SEEDS:
        raise ValueError(f"seed {seed!r}: expected one of {', '.join(SEEDS)}")
    if seed == "auto":
        return "one" if starts_at_logits else "activation"
    return seed


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
    if seed not in SEEDS[1:]:
        raise ValueError(f"seed {seed!r}: expected activation or one")
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
