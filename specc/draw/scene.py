"""A network diagram as plain shapes (boxes, text, edge paths) that every renderer draws.

`network_scene` lays out one spec; `diff_scene` lays out two side by side with the layers
that differ coloured and a legend. Text is set in a monospace font, so a box's width follows
from its longest line and the renderers (SVG, matplotlib) agree on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from specc.draw.diff import GraphDiff, diff_graphs
from specc.draw.labels import (
    DIFF_LEGEND,
    DIFF_PALETTES,
    INPUT_PALETTE,
    Palette,
    TextLine,
    dims,
    input_lines,
    layer_lines,
    palette,
)
from specc.draw.layout import PathCommand, Rect, layered_layout
from specc.ir import INPUT
from specc.outputs import describe_outputs
from specc.shapes import ShapeReport

FONT_SIZE = {"title": 12.0, "body": 11.0, "shape": 11.0, "note": 11.0, "heading": 14.0, "legend": 11.0}
CHAR_WIDTH = 0.62  # of the font size: DejaVu Sans Mono advances 0.602 em; a little slack for hinting
LINE_HEIGHT = 1.4  # of the font size
PAD_X, PAD_Y = 10.0, 5.0
EDGE_COLOR = "#555555"


@dataclass(frozen=True)
class SceneText:
    x: float
    y: float  # the baseline
    text: str
    style: str
    anchor: str = "middle"  # "middle" or "start"
    color: str = "#111111"


@dataclass(frozen=True)
class SceneBox:
    rect: Rect
    palette: Palette
    texts: tuple[SceneText, ...]
    attrs: dict[str, str]  # name, type, shape, status, side: what the SVG's data-* attributes say
    dashed: bool = False
    bold: bool = False


@dataclass(frozen=True)
class SceneEdge:
    commands: tuple[PathCommand, ...]
    attrs: dict[str, str]  # src, dst, side
    color: str = EDGE_COLOR
    dashed: bool = False
    label: SceneText | None = None


@dataclass(frozen=True)
class Scene:
    width: float
    height: float
    boxes: tuple[SceneBox, ...] = ()
    edges: tuple[SceneEdge, ...] = ()
    texts: tuple[SceneText, ...] = ()
    swatches: tuple[tuple[Rect, Palette, bool], ...] = field(default=())
    title: str = ""


def text_width(text: str, style: str) -> float:
    return len(text) * FONT_SIZE[style] * CHAR_WIDTH


def _box_size(lines: list[TextLine]) -> tuple[float, float]:
    width = max(text_width(line.text, line.style) for line in lines) + 2 * PAD_X
    height = sum(FONT_SIZE[line.style] * LINE_HEIGHT for line in lines) + 2 * PAD_Y
    return width, height


def _box_texts(rect: Rect, lines: list[TextLine]) -> tuple[SceneText, ...]:
    out, y = [], rect.y + PAD_Y
    for line in lines:
        step = FONT_SIZE[line.style] * LINE_HEIGHT
        # the baseline sits ~0.3 em above the bottom of the line's slot (room for descenders)
        out.append(SceneText(rect.x + rect.w / 2, y + step - 0.3 * FONT_SIZE[line.style] - 2, line.text, line.style))
        y += step
    return tuple(out)


@dataclass(frozen=True)
class _Panel:
    boxes: tuple[SceneBox, ...]
    edges: tuple[SceneEdge, ...]
    width: float
    height: float


def _output_note(report: ShapeReport, name: str) -> str:
    outputs = report.graph.output_names
    if name not in outputs:
        return ""
    return "\u21d2 output" if len(outputs) == 1 else f"\u21d2 output {outputs.index(name) + 1} of {len(outputs)}"


def _panel(
    report: ShapeReport,
    rankdir: str,
    *,
    params: bool,
    weight_notes: dict[str, str] | None = None,
    diff: tuple[dict[str, str], dict[str, str]] | None = None,
    side: str = "",
) -> _Panel:
    """One network laid out; `diff` = (status per layer, change note per layer)."""
    graph = report.graph
    status, notes = diff or ({}, {})
    lines = {INPUT: input_lines(graph.input_shape)}
    for node in graph.nodes:
        info = report.info(node.name)
        lines[node.name] = layer_lines(
            node.name,
            node.op,
            info.shape,
            params=info.params if params else None,
            weight_note=(weight_notes or {}).get(node.name, ""),
            output_note=_output_note(report, node.name),
            change_note=notes.get(node.name, "") if status.get(node.name) == "changed" else "",
        )
    names = [INPUT] + [n.name for n in graph.nodes]
    edges = list(graph.nx.edges())
    layout = layered_layout(names, {n: _box_size(lines[n]) for n in names}, edges, rankdir)
    boxes = []
    for name in names:
        rect = layout.rects[name]
        node = graph.by_name.get(name)
        state = status.get(name, "")
        colours = INPUT_PALETTE if node is None else DIFF_PALETTES[state] if state else palette(node.op)
        attrs = {
            "name": name,
            "type": node.type if node else "input",
            "shape": dims(report.shapes[name]) if node else dims(graph.input_shape),
            "side": side,
            "status": state,
            "output": "1" if name in graph.output_names else "",
        }
        texts = _box_texts(rect, lines[name])
        boxes.append(SceneBox(rect, colours, texts, attrs, dashed=state == "removed", bold=bool(attrs["output"])))
    drawn = []
    for route in layout.routes:
        ends = {status.get(route.src, ""), status.get(route.dst, "")}
        mark = "removed" if "removed" in ends else "added" if "added" in ends else ""
        colour = DIFF_PALETTES[mark].stroke if mark else EDGE_COLOR
        attrs = {"src": route.src, "dst": route.dst, "side": side}
        label = _operand_label(report, route.src, route.dst, route.end, rankdir)
        drawn.append(SceneEdge(route.commands, attrs, colour, mark == "removed", label))
    return _Panel(tuple(boxes), tuple(drawn), layout.width, layout.height)


def _operand_label(report: ShapeReport, src: str, dst: str, end, rankdir: str) -> SceneText | None:
    """Operand positions on edges into a layer whose input order matters (concat)."""
    node = report.graph.by_name.get(dst)
    if node is None or not node.op.joins_channels:
        return None
    which = ",".join(str(i + 1) for i, name in enumerate(node.inputs) if name == src)
    x, y = end
    if rankdir == "TB":
        return SceneText(x + 4, y - 5, which, "legend", "start", "#7a4b99")
    return SceneText(x - 10, y - 4, which, "legend", "start", "#7a4b99")


def _moved(panel: _Panel, dx: float, dy: float) -> _Panel:
    def move_text(t: SceneText) -> SceneText:
        return replace(t, x=t.x + dx, y=t.y + dy)

    def move_commands(commands):
        return tuple(
            (op, tuple(v + (dx if i % 2 == 0 else dy) for i, v in enumerate(values))) for op, values in commands
        )

    boxes = tuple(
        replace(
            b,
            rect=Rect(b.rect.x + dx, b.rect.y + dy, b.rect.w, b.rect.h),
            texts=tuple(move_text(t) for t in b.texts),
        )
        for b in panel.boxes
    )
    edges = tuple(
        replace(e, commands=move_commands(e.commands), label=move_text(e.label) if e.label else None)
        for e in panel.edges
    )
    return _Panel(boxes, edges, panel.width, panel.height)


def heading(report: ShapeReport) -> str:
    """The line under a diagram's title: input, outputs and parameters."""
    graph = report.graph
    return f"input {dims(graph.input_shape)}, {describe_outputs(report)}, {report.total_params:,} params"


HEADING_H = 48.0


def _title(x: float, y: float, title: str, report: ShapeReport) -> tuple[list[SceneText], float]:
    """A bold title and the heading line under it, from baseline `y`; and their width."""
    details = heading(report)
    texts = [SceneText(x, y, title, "heading", "start"), SceneText(x, y + 17, details, "body", "start")]
    return texts, max(text_width(title, "heading"), text_width(details, "body")) + 24


def network_scene(
    report: ShapeReport, rankdir: str = "TB", *, params: bool = False, weight_notes: dict[str, str] | None = None
) -> Scene:
    """One spec's diagram: a heading, then the layered layout."""
    panel = _moved(_panel(report, rankdir, params=params, weight_notes=weight_notes), 0, HEADING_H)
    texts, title_w = _title(12, 20, report.graph.name, report)
    width = max(panel.width, title_w)
    return Scene(
        math.ceil(width),
        math.ceil(panel.height + HEADING_H),
        panel.boxes,
        panel.edges,
        tuple(texts),
        title=report.graph.name,
    )


def diff_scene(before: ShapeReport, after: ShapeReport, rankdir: str = "TB", *, params: bool = False) -> Scene:
    """Two specs side by side (stacked for LR), layers that differ coloured, with a legend."""
    found: GraphDiff = diff_graphs(before.graph, after.graph)
    left = _panel(before, rankdir, params=params, diff=(found.before, found.notes), side="before")
    right = _panel(after, rankdir, params=params, diff=(found.after, found.notes), side="after")
    top, gap = 34.0, 40.0  # the legend's height; the space between the panels
    first, first_w = _title(12, top + 20, f"before: {before.graph.name}", before)
    if rankdir == "TB":
        left_w = max(left.width, first_w)
        a, b = _moved(left, 0, top + HEADING_H), _moved(right, left_w + gap, top + HEADING_H)
        second, second_w = _title(left_w + gap + 12, top + 20, f"after: {after.graph.name}", after)
        width = left_w + gap + max(right.width, second_w)
        height = top + HEADING_H + max(left.height, right.height)
    else:
        below = top + HEADING_H + left.height + gap
        a, b = _moved(left, 0, top + HEADING_H), _moved(right, 0, below + HEADING_H)
        second, second_w = _title(12, below + 20, f"after: {after.graph.name}", after)
        width = max(left.width, right.width, first_w, second_w)
        height = below + HEADING_H + right.height
    texts = first + second
    swatches, x = [], 12.0
    for state, words in DIFF_LEGEND.items():
        swatches.append((Rect(x, 10, 18, 14), DIFF_PALETTES[state], state == "removed"))
        texts.append(SceneText(x + 24, 21, words, "legend", "start"))
        x += 24 + text_width(words, "legend") + 22
    width = max(width, x)
    title = f"{before.graph.name} vs {after.graph.name}"
    return Scene(
        math.ceil(width), math.ceil(height), a.boxes + b.boxes, a.edges + b.edges, tuple(texts), tuple(swatches), title
    )
