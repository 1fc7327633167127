"""Which unit of a layer an explanation starts from — parsed in one place for every engine.

A unit is a whole channel (`Channel(c)`), one position of a channel (`Position(c, y, x)`), or,
on a flat layer such as the logits, one feature (`Channel(k)`: a class is a channel of the
logits). Written on the command line as "C" or "C,Y,X"; in Python also an int or a (c, y, x)
tuple. Errors are `ValueError`s whose text the commands print after the flag's name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Channel:
    """A whole channel of a feature map, or one feature of a flat layer (a class logit)."""

    channel: int

    def label(self) -> str:
        return f"c{self.channel}"

    def text(self) -> str:
        return f"{self.channel}"


@dataclass(frozen=True)
class Position:
    """One unit of a feature map: channel `channel` at row `y`, column `x`."""

    channel: int
    y: int
    x: int

    def label(self) -> str:
        return f"c{self.channel}@{self.y},{self.x}"

    def text(self) -> str:
        return f"{self.channel},{self.y},{self.x}"


Unit = Channel | Position


def parse_unit(text: object) -> Unit:
    """'C' -> Channel(C); 'C,Y,X' -> Position(C, Y, X). Raises ValueError with the reason
    (any other value is read as its `str`, so `as_unit` can leave what it rejects to this)."""
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
    """A unit from any accepted form: a Channel/Position, an int, a (c, y, x) tuple or text."""
    if isinstance(value, (Channel, Position)):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Channel(value)
    if isinstance(value, (tuple, list)) and len(value) in (1, 3):
        try:
            numbers = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(f"unit {value!r}: expected integers") from None
        return Channel(numbers[0]) if len(numbers) == 1 else Position(*numbers)
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
