"""Helpers the rules share: an editable copy of a node list, new layers built from the spec's
defaults, the padding search that keeps an output size, and the classifier lookup.

`NodeList` is a scratch copy that lives inside one `apply` call; the input graph is never
touched (its nodes are frozen anyway) and the result is a new `Graph`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from specc.ir import INPUT, Graph, Node
from specc.ops import OPS, LayerOp, Shape, ShapeError


class NodeList:
    """A mutable working copy of a graph's nodes in spec order, and of its `outputs`: the
    network's outputs are readers too, so rewiring a layer's readers moves them as well."""

    def __init__(self, graph: Graph):
        self.base = graph
        self.nodes: list[Node] = list(graph.nodes)
        self.outputs: list[str] = list(graph.outputs)
        self.added: set[str] = set()

    def index(self, name: str) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.name == name)

    def node(self, name: str) -> Node:
        return self.nodes[self.index(name)]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def fresh_name(self, prefix: str) -> str:
        taken = {n.name for n in self.nodes} | self.added
        name = self.base.fresh_name(prefix, taken)
        self.added.add(name)
        return name

    def put(self, node: Node) -> None:
        """Replace the layer of the same name."""
        self.nodes[self.index(node.name)] = node

    def swap(self, old: str, new: Node) -> None:
        """Put `new` where `old` was and make every reader of `old` read `new`."""
        self.nodes[self.index(old)] = new
        self.rewire(old, new.name)

    def remove(self, name: str) -> None:
        """Drop a single-input layer; its readers read its input instead."""
        node = self.node(name)
        del self.nodes[self.index(name)]
        self.rewire(name, node.inputs[0])

    def insert_before(self, name: str, new: Node) -> None:
        self.nodes.insert(self.index(name), new)

    def insert_after(self, name: str, new: Node, rewire: bool = True) -> None:
        """Insert `new` right after `name`; readers of `name` (but `new`) then read `new`."""
        if rewire:
            self.rewire(name, new.name)
        self.nodes.insert(self.index(name) + 1, new)

    def rewire(self, old: str, new: str) -> None:
        for i, n in enumerate(self.nodes):
            if old in n.inputs and n.name != new:
                self.nodes[i] = n.replace(inputs=tuple(new if s == old else s for s in n.inputs))
        self.outputs = [new if name == old else name for name in self.outputs]

    def graph(self) -> Graph:
        return self.base.replace(nodes=tuple(self.nodes), outputs=tuple(self.outputs))


def new_node(graph: Graph, name: str, op_type: str, at: Node, inputs: tuple[str, ...], **params) -> Node:
    """A layer built like a spec would build it: the spec's `defaults` for its type, then
    `params`. It is located at `at` (the layer it replaces or accompanies), so that a later
    error still points into the user's file."""
    cls = OPS[op_type]
    defaults = {k: v for k, v in graph.defaults.get(op_type, {}).items() if k in cls.model_fields}
    op = cls.model_validate({**defaults, **params})
    return Node(name, op, inputs, at.pos, at.path)


def output_or_none(op: LayerOp, shape: Shape) -> Shape | None:
    try:
        return op.output_shape([shape])
    except ShapeError:
        return None


def padding_for(
    kernel_hw: tuple[int, int],
    shape_with: Callable[[object], Shape | None],
    target: Shape,
    preferred: tuple = (),
    max_pad: tuple[int, int] | None = None,
):
    """The padding (`same`, `valid`, an int or [h, w]) for which `shape_with(padding)` equals
    `target`, trying `preferred` first, then `same`, `valid` and explicit padding, smallest
    first. None when no padding gives the target."""
    kh, kw = kernel_hw
    limit_h, limit_w = max_pad or (kh - 1, kw - 1)
    explicit = sorted(itertools.product(range(limit_h + 1), range(limit_w + 1)), key=lambda p: (max(p), p))
    for padding in (*preferred, "same", "valid", *explicit):
        if isinstance(padding, tuple):
            padding = _canonical_padding(padding, kernel_hw)
        if shape_with(padding) == target:
            return padding
    return None


def _canonical_padding(pads: tuple[int, int], kernel_hw: tuple[int, int]):
    if pads == (0, 0):
        return "valid"
    if kernel_hw[0] % 2 and kernel_hw[1] % 2 and pads == (kernel_hw[0] // 2, kernel_hw[1] // 2):
        return "same"
    return pads[0] if pads[0] == pads[1] else list(pads)


def out_with_padding(op: LayerOp, shape: Shape | None, padding) -> Shape | None:
    """The output shape of a conv or pool with another padding (None where it does not fit)."""
    if shape is None:
        return None
    try:
        candidate = op.model_validate({**op.params(), "padding": padding})
    except ValueError:
        return None
    return output_or_none(candidate, shape)


def classifier_layers(graph: Graph) -> tuple[list[Node], bool]:
    """The layers with a width (conv `filters`, linear `units`) that produce the class scores,
    found by walking back from the output through layers that keep the channel count; and
    whether the walk crossed a layer joining channels (`concat`: then the scores are split
    over several layers)."""
    found: list[Node] = []
    through_concat = False
    todo, seen = [graph.output.name], set()
    while todo:
        name = todo.pop()
        if name in seen or name == INPUT:
            continue
        seen.add(name)
        node = graph.node(name)
        if node.op.width_field is not None:
            found.append(node)
            continue
        through_concat |= node.op.joins_channels
        todo.extend(node.inputs)
    found.sort(key=lambda n: graph.nodes.index(n))
    return found, through_concat


def dims(shape: Shape) -> str:
    return "x".join(map(str, shape))
