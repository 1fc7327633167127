"""What a layer's box says and how it is coloured, read from the op table.

Nothing here lists layer types: the options shown are the op's own fields (those it requires
and those set to something other than their default), and the colour comes from the op's
traits (`width_field`, `pooling`, `normalizes`, ...). A new layer type is drawn right without
touching this file.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

from specc.ops import LayerOp

# Fields that only say how weights start: they change no shape and no computation of a
# trained network, so a diagram does not show them.
_INIT_PREFIX = "init"
WRAP = 34  # characters per option line
ARROW = "\u2192"  # what a box's output shape line starts with


@dataclass(frozen=True)
class TextLine:
    text: str
    style: str  # "title", "body", "shape", "note"


@dataclass(frozen=True)
class Palette:
    fill: str
    stroke: str


INPUT_PALETTE = Palette("#e4e4e4", "#333333")
_PALETTES = {
    "weights": Palette("#dcebf8", "#3f6f9f"),  # conv, linear: they have a width
    "pooling": Palette("#fde8c9", "#b06d00"),
    "norm": Palette("#e0f2df", "#3c7d3a"),
    "merge": Palette("#ece0f5", "#7a4b99"),
    "train_only": Palette("#f1f1f1", "#8a8a8a"),
    "other": Palette("#ffffff", "#555555"),
}
# --diff: the status of a layer, its colours and what the legend calls it.
DIFF_PALETTES = {
    "changed": Palette("#ffe2a1", "#d98200"),
    "added": Palette("#c9efc9", "#2e7d32"),
    "removed": Palette("#f9caca", "#c62828"),
    "same": Palette("#ffffff", "#8a8a8a"),
}
DIFF_LEGEND = {
    "changed": "changed (options differ)",
    "added": "added",
    "removed": "removed",
    "same": "unchanged",
}


def category(op: LayerOp) -> str:
    """A colour group from the op's traits."""
    if op.width_field is not None:
        return "weights"
    if op.max_inputs > 1:
        return "merge"
    if op.pooling or op.vectorizes:
        return "pooling"
    if op.normalizes:
        return "norm"
    if op.train_only:
        return "train_only"
    return "other"


def palette(op: LayerOp) -> Palette:
    return _PALETTES[category(op)]


def format_value(value: object) -> str:
    """A field value as a diagram shows it: [3, 3] as 3x3, a mapping as type(k=v)."""
    if isinstance(value, (list, tuple)):
        return "x".join(format_value(v) for v in value)
    if isinstance(value, dict):
        inner = ", ".join(f"{k}={format_value(v)}" for k, v in value.items() if k != "type")
        return f"{value.get('type', '')}({inner})" if inner else str(value.get("type", ""))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def options(op: LayerOp) -> list[tuple[str, object]]:
    """The fields worth showing, in the op's own order: the required ones and any set to a
    value other than its default (`type` and initialisation fields left out)."""
    shown = []
    values = op.params()
    for name, field in type(op).model_fields.items():
        if name == "type" or name.startswith(_INIT_PREFIX):
            continue
        # params() is JSON data (lists, not tuples): compare the default in the same form.
        default = json.loads(json.dumps(field.get_default(call_default_factory=True), default=str))
        if field.is_required() or values.get(name) != default:
            shown.append((name, values.get(name)))
    return shown


def option_text(op: LayerOp) -> str:
    return " ".join(f"{name}={format_value(value)}" for name, value in options(op))


def dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def layer_lines(
    name: str,
    op: LayerOp,
    shape,
    *,
    params: int | None = None,
    weight_note: str = "",
    output_note: str = "",
    change_note: str = "",
) -> list[TextLine]:
    """The text of a layer's box, top to bottom."""
    lines = [TextLine(f"{name} : {op.kind}", "title")]
    lines += [TextLine(t, "body") for t in textwrap.wrap(option_text(op), WRAP, break_on_hyphens=False)]
    lines += [TextLine(t, "note") for t in textwrap.wrap(change_note, WRAP, break_on_hyphens=False)]
    lines.append(TextLine(f"{ARROW} {dims(shape)}", "shape"))
    if params:  # layers without weights say nothing rather than "0 params"
        lines.append(TextLine(f"{params:,} params", "body"))
    if weight_note:
        lines.append(TextLine(weight_note, "body"))
    if output_note:
        lines.append(TextLine(output_note, "note"))
    return lines


def input_lines(shape) -> list[TextLine]:
    return [TextLine("input", "title"), TextLine(f"{ARROW} {dims(shape)}", "shape")]
