"""A scene as PNG or PDF through matplotlib (the `train` extra installs it). One scene unit is
one pixel at 100 dpi, so the PNG matches the SVG; text uses DejaVu Sans Mono, which ships
with matplotlib, so the boxes fit their text exactly as the layout computed."""

from __future__ import annotations

import io

from specc.draw.scene import FONT_SIZE, Scene, SceneText
from specc.errors import UserError

DPI = 100.0
PT_PER_UNIT = 72.0 / DPI  # a scene unit is a pixel at DPI
MAX_PIXELS = 60000  # Agg refuses images over 2**16 pixels a side; stay clear of it


def require_matplotlib():
    """matplotlib, or a one-line refusal naming the install command."""
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "PNG and PDF output need matplotlib (pip install 'specc[train]' or pip install matplotlib);"
            " SVG and DOT output work without it"
        ) from None
    return matplotlib


def render_image(scene: Scene, fmt: str) -> bytes:
    """PNG or PDF bytes of the scene."""
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, PathPatch, Polygon, Rectangle
    from matplotlib.path import Path

    scale = min(1.0, MAX_PIXELS / max(scene.width, scene.height)) if fmt == "png" else 1.0
    fig = Figure(figsize=(scene.width / DPI, scene.height / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, scene.width)
    ax.set_ylim(scene.height, 0)
    ax.axis("off")
    codes = {"M": [Path.MOVETO], "L": [Path.LINETO], "C": [Path.CURVE4] * 3}
    for edge in scene.edges:
        vertices, kinds = [], []
        for op, values in edge.commands:
            vertices += [values[i : i + 2] for i in range(0, len(values), 2)]
            kinds += codes[op]
        style = (0, (5, 3)) if edge.dashed else "solid"
        ax.add_patch(PathPatch(Path(vertices, kinds), fill=False, edgecolor=edge.color, lw=1.1, linestyle=style))
        ax.add_patch(Polygon(_arrowhead(vertices), closed=True, color=edge.color, lw=0))
        if edge.label:
            _text(ax, edge.label)
    for box in scene.boxes:
        r = box.rect
        ax.add_patch(
            FancyBboxPatch(
                (r.x, r.y),
                r.w,
                r.h,
                boxstyle="round,pad=0,rounding_size=5",
                facecolor=box.palette.fill,
                edgecolor=box.palette.stroke,
                lw=2.0 if box.bold else 1.0,
                linestyle=(0, (6, 3)) if box.dashed else "solid",
            )
        )
        for t in box.texts:
            _text(ax, t)
    for rect, colours, dashed in scene.swatches:
        ax.add_patch(
            Rectangle(
                (rect.x, rect.y),
                rect.w,
                rect.h,
                facecolor=colours.fill,
                edgecolor=colours.stroke,
                linestyle=(0, (4, 2)) if dashed else "solid",
            )
        )
    for t in scene.texts:
        _text(ax, t)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI * scale)
    return buffer.getvalue()


def _text(ax, t: SceneText) -> None:
    ax.text(
        t.x,
        t.y,
        t.text,
        fontsize=FONT_SIZE[t.style] * PT_PER_UNIT,
        family="DejaVu Sans Mono",
        weight="bold" if t.style in ("title", "heading") else "normal",
        style="italic" if t.style == "note" else "normal",
        ha="center" if t.anchor == "middle" else "left",
        va="baseline",
        color=t.color,
    )


def _arrowhead(vertices) -> list[tuple[float, float]]:
    """A small triangle at the end of a path, pointing along its last direction."""
    (x1, y1) = vertices[-1]
    for x0, y0 in reversed(vertices[:-1]):
        if abs(x1 - x0) + abs(y1 - y0) > 1e-6:
            break
    else:
        x0, y0 = x1, y1 - 1
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    size, half = 7.0, 3.5
    bx, by = x1 - ux * size, y1 - uy * size
    return [(x1, y1), (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)]
