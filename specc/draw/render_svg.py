"""A scene as SVG text, written directly (no library): every string escaped, every box a
`<g class="node">` and every edge a `<path class="edge">` whose data-* attributes name the
layer and the two ends, so tools (and the tests) can read the diagram back."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from specc.draw.scene import FONT_SIZE, Scene, SceneText

FONT_FAMILY = "DejaVu Sans Mono, Menlo, Consolas, monospace"
_WEIGHT = {"title": "bold", "heading": "bold"}
_ITALIC = {"note"}


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _path_data(commands) -> str:
    return " ".join(op + " " + " ".join(_number(v) for v in values) for op, values in commands)


def _data(attrs: dict[str, str]) -> str:
    return " ".join(f"data-{key}={quoteattr(value)}" for key, value in attrs.items() if value)


def _text(t: SceneText) -> str:
    style = [f'font-size="{_number(FONT_SIZE[t.style])}"']
    if t.style in _WEIGHT:
        style.append('font-weight="bold"')
    if t.style in _ITALIC:
        style.append('font-style="italic"')
    if t.anchor == "middle":
        style.append('text-anchor="middle"')
    if t.color != "#111111":
        style.append(f'fill="{t.color}"')
    return f'<text x="{_number(t.x)}" y="{_number(t.y)}" class="{t.style}" {" ".join(style)}>{escape(t.text)}</text>'


def render_svg(scene: Scene) -> str:
    """The whole document."""
    w, h = _number(scene.width), _number(scene.height)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}"'
        f" font-family={quoteattr(FONT_FAMILY)}>",
        f"<title>{escape(scene.title)}</title>",
        "<defs>",
    ]
    colours = sorted({e.color for e in scene.edges})
    for i, colour in enumerate(colours):
        out.append(
            f'<marker id="arrow{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
            f' orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{colour}"/></marker>'
        )
    out += ["</defs>", '<rect width="100%" height="100%" fill="#ffffff"/>', '<g class="edges">']
    for k, edge in enumerate(scene.edges):
        dash = ' stroke-dasharray="5 3"' if edge.dashed else ""
        marker = colours.index(edge.color)
        out.append(
            f'<path class="edge" id="edge{k}" {_data(edge.attrs)} d="{_path_data(edge.commands)}" fill="none"'
            f' stroke="{edge.color}" stroke-width="1.3"{dash} marker-end="url(#arrow{marker})"/>'
        )
        if edge.label:
            out.append(_text(edge.label))
    out += ["</g>", '<g class="nodes">']
    for k, box in enumerate(scene.boxes):
        r = box.rect
        dash = ' stroke-dasharray="6 3"' if box.dashed else ""
        width = "2.4" if box.bold else "1.2"
        out.append(f'<g class="node" id="node{k}" {_data(box.attrs)}>')
        out.append(
            f'<rect x="{_number(r.x)}" y="{_number(r.y)}" width="{_number(r.w)}" height="{_number(r.h)}" rx="5"'
            f' fill="{box.palette.fill}" stroke="{box.palette.stroke}" stroke-width="{width}"{dash}/>'
        )
        out += [_text(t) for t in box.texts]
        out.append("</g>")
    out += ["</g>", '<g class="legend">']
    for rect, colours_, dashed in scene.swatches:
        dash = ' stroke-dasharray="4 2"' if dashed else ""
        out.append(
            f'<rect x="{_number(rect.x)}" y="{_number(rect.y)}" width="{_number(rect.w)}" height="{_number(rect.h)}"'
            f' rx="3" fill="{colours_.fill}" stroke="{colours_.stroke}"{dash}/>'
        )
    out += [_text(t) for t in scene.texts]
    out += ["</g>", "</svg>"]
    return "\n".join(out) + "\n"
