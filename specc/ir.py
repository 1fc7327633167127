"""The graph IR: frozen layer nodes in a networkx DiGraph.

Nodes never change; a transform builds a new `Graph` with `graph.replace(...)` or
`graph.with_nodes(...)`. The order of an `add`/`concat` node's operands is its own `inputs`
tuple (graph edges are unordered). Shapes are not stored here: `specc.shapes.infer` derives
them.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from specc.errors import UNKNOWN_POS, Diagnostic, SourcePos, did_you_mean
from specc.ops import LayerOp
from specc.reserved import RESERVED_NAMES

INPUT = "input"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Node:
    """One layer. `pos`/`path`/`field_pos` locate it in its source and take no part in equality."""

    name: str
    op: LayerOp
    inputs: tuple[str, ...]
    pos: SourcePos = field(default=UNKNOWN_POS, compare=False)
    path: str = field(default="", compare=False)
    field_pos: tuple[tuple[str, SourcePos], ...] = field(default=(), compare=False, repr=False)

    @property
    def type(self) -> str:
        return self.op.kind

    def pos_of(self, field_name: str) -> SourcePos:
        """Where a parameter of this layer was written (the layer itself if nowhere)."""
        return dict(self.field_pos).get(field_name, self.pos)

    def replace(self, **changes) -> Node:
        return dataclasses.replace(self, **changes)

    def with_params(self, **params) -> Node:
        """A copy whose op has some parameters changed (validated again)."""
        return self.replace(op=type(self.op).model_validate({**self.op.params(), **params}))


@dataclass(frozen=True, eq=False)
class Graph:
    """A whole network: header fields of the spec plus its layer nodes in spec order.

    `classes` is None for a network that is not a classifier (a backbone, a segmentation
    head): its output is whatever its output layers produce. `outputs` are the layers the
    network returns, in order, as the spec lists them; empty means the last layer."""

    name: str
    input_shape: tuple[int, int, int]
    classes: int | None
    nodes: tuple[Node, ...]
    description: str = ""
    labels: tuple[str, ...] | None = None
    outputs: tuple[str, ...] = ()
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, Any] | None = None
    source: str = ""
    header_pos: tuple[tuple[str, SourcePos], ...] = field(default=(), repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(json.dumps(self._key(), sort_keys=True, default=str))

    def _key(self) -> tuple:
        return (
            self.name,
            self.description,
            self.input_shape,
            self.classes,
            self.labels,
            self.outputs,
            json.dumps(self.defaults, sort_keys=True),
            json.dumps(self.train, sort_keys=True, default=str),
            self.nodes,
        )

    # -- structure ------------------------------------------------------------------
    @cached_property
    def nx(self):
        """The networkx view: one vertex per layer (plus `input`), edges from inputs.

        networkx is imported on first use: its import costs more than a whole `specc check`.
        """
        import networkx as nx

        g = nx.DiGraph()
        g.add_node(INPUT, node=None, index=-1)
        for i, node in enumerate(self.nodes):
            g.add_node(node.name, node=node, index=i)
        for node in self.nodes:
            for src in node.inputs:
                if src in g:
                    g.add_edge(src, node.name)
        return g

    @cached_property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        return self.by_name[name]

    @property
    def output_names(self) -> tuple[str, ...]:
        """The layers the network returns, in order: `outputs`, else the last layer."""
        return self.outputs or (self.nodes[-1].name,)

    @property
    def output(self) -> Node:
        """The network's (last) output: the last of `outputs`, else the last layer in spec
        order. `classes` applies to it."""
        return self.by_name[self.output_names[-1]]

    @property
    def is_classifier(self) -> bool:
        """One output, and it holds the class scores: what training, evaluation and the
        `logits`/`probs` choice of the backends work with."""
        return self.classes is not None and len(self.output_names) == 1

    def scores_layer(self) -> str | None:
        """The layer holding the class scores before any softmax (None without classes)."""
        if self.classes is None:
            return None
        last = self.output
        return last.inputs[0] if last.op.makes_probabilities else last.name

    def topo_order(self) -> list[Node]:
        """Layers in a topological order that follows spec order wherever it can.

        Kahn's algorithm with spec order as the tie-break (what networkx's
        lexicographical_topological_sort gives, without importing networkx on the hot path).
        Raises ValueError on a cycle; `lint` reports cycles to users first.
        """
        index = {n.name: i for i, n in enumerate(self.nodes)}
        waiting = {n.name: sum(1 for s in set(n.inputs) if s in index) for n in self.nodes}
        readers: dict[str, list[str]] = {}
        for n in self.nodes:
            for src in set(n.inputs):
                readers.setdefault(src, []).append(n.name)
        ready = [index[name] for name, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: list[Node] = []
        while ready:
            node = self.nodes[heapq.heappop(ready)]
            order.append(node)
            for reader in readers.get(node.name, ()):
                waiting[reader] -= 1
                if waiting[reader] == 0:
                    heapq.heappush(ready, index[reader])
        if len(order) != len(self.nodes):
            raise ValueError(f"graph {self.name} has a cycle")
        return order

    def find_cycle(self) -> list[str] | None:
        """The names along one cycle (first name repeated at the end), or None."""
        by_name = self.by_name
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for start in by_name:
            stack = [(start, iter(by_name[start].inputs))]
            path = [start]
            if state.get(start):
                continue
            state[start] = 1
            while stack:
                name, it = stack[-1]
                src = next(it, None)
                if src is None:
                    state[name] = 2
                    stack.pop()
                    path.pop()
                elif src in by_name and state.get(src) == 1:
                    # `path` follows inputs backwards; turn it into data-flow order and start
                    # it at the layer written first, where the report will point.
                    flow = list(reversed(path[path.index(src) :]))
                    first = min(range(len(flow)), key=lambda i: self.nodes.index(by_name[flow[i]]))
                    flow = flow[first:] + flow[:first]
                    return flow + [flow[0]]
                elif src in by_name and not state.get(src):
                    state[src] = 1
                    stack.append((src, iter(by_name[src].inputs)))
                    path.append(src)
        return None

    def consumers(self, name: str) -> list[Node]:
        """Layers that read `name`, in spec order."""
        return [n for n in self.nodes if name in n.inputs]

    def header(self, key: str) -> SourcePos:
        return dict(self.header_pos).get(key, SourcePos(self.source or "<spec>", 1, 1))

    # -- rebuilding -----------------------------------------------------------------
    def replace(self, **changes) -> Graph:
        return dataclasses.replace(self, **changes)

    def with_nodes(self, nodes) -> Graph:
        return self.replace(nodes=tuple(nodes))

    def fresh_name(self, prefix: str, taken: set[str] | None = None) -> str:
        """The first `prefix`, `prefix_2`, ... not used by a layer."""
        used = set(self.by_name) | (taken or set()) | {INPUT}
        if prefix not in used:
            return prefix
        i = 2
        while f"{prefix}_{i}" in used:
            i += 1
        return f"{prefix}_{i}"

    # -- printing -------------------------------------------------------------------
    def to_text(self, shapes: dict[str, tuple[int, ...]] | None = None) -> str:
        """A compact, stable text form for golden tests and `--debug` output."""
        c, h, w = self.input_shape
        outputs = f", outputs {', '.join(self.outputs)}" if self.outputs else ""
        lines = [f"graph {self.name} (input {c}x{h}x{w}, classes {self.classes}{outputs})"]
        for node in self.nodes:
            params = _non_default(node.op)
            args = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
            shape = ""
            if shapes is not None and node.name in shapes:
                shape = "  : " + "x".join(map(str, shapes[node.name]))
            lines.append(f"  %{node.name} = {node.type}({', '.join(node.inputs)}) {{{args}}}{shape}")
        return "\n".join(lines) + "\n"


def _non_default(op: LayerOp) -> dict:
    out = {}
    for name, f in type(op).model_fields.items():
        if name == "type":
            continue
        value = getattr(op, name)
        if f.is_required() or value != f.default:
            out[name] = value
    return out


def _short(value) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def lint(graph: Graph) -> list[Diagnostic]:
    """Structural invariants of a graph; empty when valid.

    Checked at load time (as user errors, located) and after every transform (where a
    failure is a bug of the transform and is reported naming it).
    """
    problems: list[Diagnostic] = []
    seen: dict[str, Node] = {}
    for node in graph.nodes:
        if not NAME_RE.match(node.name) or node.name == INPUT:
            problems.append(
                Diagnostic(
                    node.pos_of("name"),
                    node.path,
                    f"invalid layer name '{node.name}' — expected letters, digits and _"
                    f" (not starting with a digit, not '{INPUT}')",
                    node.name,
                )
            )
        elif node.name in RESERVED_NAMES:
            problems.append(
                Diagnostic(
                    node.pos_of("name"),
                    node.path,
                    f"layer name '{node.name}' is reserved — every layer becomes an attribute of the PyTorch"
                    " module, and this name is a Python keyword or one of the module's own: rename the layer",
                    node.name,
                )
            )
        if node.name in seen:
            problems.append(
                Diagnostic(
                    node.pos_of("name"),
                    node.path,
                    f"duplicate layer name '{node.name}' (first used at {seen[node.name].pos})",
                    node.name,
                )
            )
        seen.setdefault(node.name, node)
    names = set(seen) | {INPUT}
    for node in graph.nodes:
        op = type(node.op)
        n = len(node.inputs)
        if not op.min_inputs <= n <= op.max_inputs:
            want = str(op.min_inputs) if op.min_inputs == op.max_inputs else f"at least {op.min_inputs}"
            problems.append(
                Diagnostic(node.pos_of("inputs"), node.path, f"{node.type} takes {want} input(s), got {n}", node.name)
            )
        for src in node.inputs:
            if src not in names:
                problems.append(
                    Diagnostic(
                        node.pos_of("inputs"),
                        node.path,
                        f"unknown input '{src}'{did_you_mean(src, names)}",
                        node.name,
                    )
                )
            if src == node.name and seen[node.name] is node:
                problems.append(Diagnostic(node.pos_of("inputs"), node.path, "layer reads its own output", node.name))
    if not problems:
        cycle = graph.find_cycle()
        if cycle:
            first = graph.node(cycle[0])
            problems.append(Diagnostic(first.pos_of("inputs"), first.path, f"cycle: {' -> '.join(cycle)}", first.name))
    if not graph.nodes:
        problems.append(Diagnostic(graph.header("layers"), "layers", "a spec needs at least one layer"))
    problems += _output_problems(graph, set(seen))
    return problems


def _output_problems(graph: Graph, names: set[str]) -> list[Diagnostic]:
    """`outputs` name distinct layers of the graph. The spec loader reports these at each
    list item; here they catch a transform that removed or renamed an output layer."""
    problems = []
    for i, name in enumerate(graph.outputs):
        if name not in names:
            message = f"no layer named '{name}'{did_you_mean(name, names)}"
        elif name in graph.outputs[:i]:
            message = f"'{name}' is listed twice"
        else:
            continue
        problems.append(Diagnostic(graph.header("outputs"), f"outputs[{i}]", message))
    return problems
