"""A scene as graphviz DOT, for people who have graphviz (`dot -Tpdf net.dot -o net.pdf`).
Boxes keep their text and colours; graphviz does its own layout. A `--diff` scene becomes two
clusters, "before" and "after", whose node ids are prefixed with their side."""

from __future__ import annotations

from specc.draw.scene import Scene


def _quoted(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as \\n."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node_id(side: str, name: str) -> str:
    return _quoted(f"{side}:{name}" if side else name)


def render_dot(scene: Scene, rankdir: str = "TB") -> str:
    """The DOT text: one node per box, one edge per drawn edge."""
    out = [
        f"digraph {_quoted(scene.title or 'network')} {{",
        f"  rankdir={rankdir};",
        '  node [shape=box, style="rounded,filled", fontname="DejaVu Sans Mono", fontsize=10];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    sides = list(dict.fromkeys(box.attrs.get("side", "") for box in scene.boxes))
    for side in sides:
        indent = "  "
        if side:
            out.append(f"  subgraph {_quoted('cluster_' + side)} {{")
            out.append(f"    label={_quoted(side)};")
            indent = "    "
        for box in scene.boxes:
            if box.attrs.get("side", "") != side:
                continue
            label = "\n".join(t.text for t in box.texts)
            style = '"rounded,filled,dashed"' if box.dashed else '"rounded,filled"'
            width = ", penwidth=2" if box.bold else ""
            out.append(
                f"{indent}{_node_id(side, box.attrs['name'])} [label={_quoted(label)},"
                f' fillcolor="{box.palette.fill}", color="{box.palette.stroke}", style={style}{width}];'
            )
        if side:
            out.append("  }")
    for edge in scene.edges:
        side = edge.attrs.get("side", "")
        extra = [f'color="{edge.color}"']
        if edge.dashed:
            extra.append("style=dashed")
        if edge.label:
            extra.append(f"headlabel={_quoted(edge.label.text)}")
        out.append(
            f"  {_node_id(side, edge.attrs['src'])} -> {_node_id(side, edge.attrs['dst'])} [{', '.join(extra)}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"
