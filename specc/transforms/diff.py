"""`specc transform --diff`: what the transforms changed, layer by layer, and the totals.

Layers are matched by name. A layer is listed when it was added (+), removed (-) or changed
(~: an op parameter, its type, an explicit input, its output shape or parameter count);
rewiring that only follows spec order (a dropout now reading the layer that replaced a pool)
is not a change worth reading. Removed layers are listed where they stood.
"""

from __future__ import annotations

from specc.ir import INPUT, Graph, Node
from specc.shapes import ShapeReport
from specc.transforms.pipeline import TransformResult


def _dims(values) -> str:
    return "x".join(map(str, values))


def _square(pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else _dims(pair)


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return _dims(v)
    return str(v)


def _previous(graph: Graph) -> dict[str, str]:
    names = [INPUT] + [n.name for n in graph.nodes]
    return dict(zip(names[1:], names[:-1]))


def _param_changes(old: Node, new: Node, before: Graph, after: Graph) -> list[str]:
    """What differs in a layer's definition (type, parameters, explicit inputs)."""
    out = []
    if old.type != new.type:
        out.append(f"type {old.type} → {new.type}")
    else:
        a, b = old.op.params(), new.op.params()
        out += [f"{k} {_value(a.get(k))} → {_value(b.get(k))}" for k in a if a.get(k) != b.get(k)]
    sequential = old.inputs == (_previous(before).get(old.name),) and new.inputs == (_previous(after)[new.name],)
    if old.inputs != new.inputs and not sequential:
        out.append(f"inputs {', '.join(old.inputs)} → {', '.join(new.inputs)}")
    return out


def _row(mark: str, report: ShapeReport, name: str) -> tuple[str, ...]:
    info = report.info(name)
    return (mark, name, info.type, info.describe, _dims(info.shape), f"{info.params:,}")


def _changed_row(name: str, before: ShapeReport, after: ShapeReport) -> tuple[str, ...] | None:
    node = after.graph.node(name)
    changes = _param_changes(before.graph.node(name), node, before.graph, after.graph)
    a, b = before.info(name), after.info(name)
    if not changes and a.shape == b.shape and a.params == b.params:
        return None
    shape = _dims(b.shape) if a.shape == b.shape else f"{_dims(a.shape)} → {_dims(b.shape)}"
    params = f"{b.params:,}" if a.params == b.params else f"{a.params:,} → {b.params:,}"
    return ("~", name, node.type, "; ".join(changes), shape, params)


def layer_rows(before: ShapeReport, after: ShapeReport) -> list[tuple[str, ...]]:
    """(mark, name, type, details, output, params) for each added, removed or changed layer,
    removed layers first where a layer was replaced (as in a unified diff)."""
    old_names = [n.name for n in before.graph.nodes]
    old_index = {name: i for i, name in enumerate(old_names)}
    new_nodes = after.graph.nodes
    new_names = {n.name for n in new_nodes}
    # For each new layer, the old position of the next layer that exists in both graphs:
    # removed layers before that position are listed before it.
    upto, following = [], len(old_names)
    for node in reversed(new_nodes):
        following = old_index.get(node.name, following)
        upto.append(following)
    upto.reverse()
    rows: list[tuple[str, ...]] = []
    next_old = 0
    for node, limit in zip(new_nodes, upto):
        rows += [_row("-", before, name) for name in old_names[next_old:limit] if name not in new_names]
        next_old = max(next_old, limit)
        if node.name not in old_index:
            rows.append(_row("+", after, node.name))
        elif (row := _changed_row(node.name, before, after)) is not None:
            rows.append(row)
    rows += [_row("-", before, name) for name in old_names[next_old:] if name not in new_names]
    return rows


def _table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def _count(label: str, a: int, b: int) -> tuple[str, ...]:
    return (label, f"{a:,}", "→", f"{b:,}", f"({b - a:+,})" if a != b else "")


def render(result: TransformResult) -> str:
    """The diff as text: a header, the changed layers, then totals before -> after."""
    before, after = result.source_report, result.report
    steps = ", ".join(t.label() for t in result.steps)
    rows = layer_rows(before, after)
    counts = {m: sum(1 for r in rows if r[0] == m) for m in "+-~"}
    out = [
        f"{before.graph.name}: {steps}",
        f"layers: {len(before.graph.nodes)} → {len(after.graph.nodes)}"
        f" ({counts['+']} added, {counts['-']} removed, {counts['~']} changed)",
    ]
    if rows:
        out += _table([("", "layer", "type", "details", "output", "params"), *rows], {5})
    else:
        out.append("  (no layer changed)")

    totals = [
        _count("parameters", before.total_params, after.total_params),
        _count("MACs per image", before.total_macs, after.total_macs),
        ("receptive field", _square(before.output_rf), "→", _square(after.output_rf), ""),
        ("input", _dims(before.graph.input_shape), "→", _dims(after.graph.input_shape), ""),
        ("output", _dims(before.output_shape), "→", _dims(after.output_shape), ""),
    ]
    out.append("totals:")
    out += _table(totals, {1, 3, 4})
    return "\n".join(out) + "\n"
