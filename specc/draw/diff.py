"""Which layers two specs do not share: the statuses `specc draw --diff` colours.

Layers are matched by name. A layer is *removed* (only in the first spec), *added* (only in
the second) or *changed*: its type, one of its options, or an input it names explicitly
differs. An input that only follows spec order (a dropout now reading the conv that replaced
a pool) is not a change: the spec text of that layer is the same. Shapes that change only
because something upstream changed are not marked either; the box shows the new shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from specc.draw.labels import format_value
from specc.ir import INPUT, Graph, Node


@dataclass(frozen=True)
class GraphDiff:
    before: dict[str, str]  # layer -> "same" | "changed" | "removed"
    after: dict[str, str]  # layer -> "same" | "changed" | "added"
    notes: dict[str, str] = field(default_factory=dict)  # changed layer -> what changed

    def names(self, status: str) -> set[str]:
        return {n for side in (self.before, self.after) for n, s in side.items() if s == status}


def _sequential(graph: Graph) -> dict[str, tuple[str, ...]]:
    """The inputs each layer would have if it named none (the layer before it)."""
    names = [INPUT] + [n.name for n in graph.nodes]
    return {name: (prev,) for prev, name in zip(names, names[1:])}


def changes(old: Node, new: Node, old_graph: Graph, new_graph: Graph) -> list[str]:
    """What differs in a layer's definition, as short `key a → b` texts."""
    if old.type != new.type:
        return [f"type {old.type} \u2192 {new.type}"]
    a, b = old.op.params(), new.op.params()
    out = [f"{k} {format_value(a.get(k))} \u2192 {format_value(b.get(k))}" for k in a if a.get(k) != b.get(k)]
    implicit = old.inputs == _sequential(old_graph)[old.name] and new.inputs == _sequential(new_graph)[new.name]
    if old.inputs != new.inputs and not implicit:
        out.append(f"inputs {','.join(old.inputs)} \u2192 {','.join(new.inputs)}")
    return out


def diff_graphs(before: Graph, after: Graph) -> GraphDiff:
    """Each layer's status on each side, and a note on what changed."""
    old, new = before.by_name, after.by_name
    notes = {}
    for name in old.keys() & new.keys():
        found = changes(old[name], new[name], before, after)
        if found:
            notes[name] = "; ".join(found)
    before_status = {n: "removed" if n not in new else "changed" if n in notes else "same" for n in old}
    after_status = {n: "added" if n not in old else "changed" if n in notes else "same" for n in new}
    return GraphDiff(before_status, after_status, notes)
