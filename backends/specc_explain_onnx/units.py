"""Units as the compiler reads them, without torch: "C", "C,Y,X", an int, a (c, y, x) tuple,
or any object with `channel` (and `y`, `x`), such as `specc_viz.units.Channel`/`Position`."""

from __future__ import annotations

from specc.errors import UserError


def parse(unit) -> tuple[int, tuple[int, int] | None]:
    """(channel, (y, x) or None for a whole channel)."""
    if hasattr(unit, "channel"):
        has_position = hasattr(unit, "y") and hasattr(unit, "x")
        return int(unit.channel), ((int(unit.y), int(unit.x)) if has_position else None)
    if isinstance(unit, int) and not isinstance(unit, bool):
        return unit, None
    if isinstance(unit, (tuple, list)):
        parts = list(unit)
    else:
        parts = str(unit).split(",")
    try:
        values = [int(str(p).strip()) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        return values[0], None
    if len(values) == 3:
        return values[0], (values[1], values[2])
    raise UserError(f"--unit {unit}: expected C (a channel) or C,Y,X (one position), as integers")
