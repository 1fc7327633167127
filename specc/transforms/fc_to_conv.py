"""Fully connected head -> 1x1 convolutions + global average pooling (the paper's section 2,
after Network in Network).

The head is the chain that ends the network: a `flatten` (or `global_avg_pool`) turning the
feature map into a vector, then linear layers with dropout/activations between them and
perhaps a softmax. Each linear layer becomes a 1x1 convolution of the same name, outputs,
bias, activation and init; the flatten goes away and a global average pooling follows the
last of them. Where the flattened map was 1x1 the two networks compute the same function
and a trained linear weight (units, C) is the conv weight (units, C, 1, 1) reshaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from specc.ir import INPUT, Graph, Node
from specc.shapes import ShapeReport
from specc.transforms.base import Rewrite, Transform, finish, located, nothing_to_do
from specc.transforms.rewrite import NodeList, dims, new_node

# Layers that may sit in a head between the vector and the class scores.
HEAD_TYPES = ("linear", "dropout", "relu", "leaky_relu", "batch_norm", "softmax")
VECTORIZERS = ("flatten", "global_avg_pool")


@dataclass(frozen=True)
class FcToConv(Transform):
    """Replace a flatten + linear head by 1x1 convolutions and global average pooling."""

    name: ClassVar[str] = "fc_to_conv"
    skip_unsupported: bool = False

    def value(self) -> object:
        return True

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        chain = _head_chain(graph)
        linears = [n for n in chain if n.type == "linear"]
        if not linears:
            return nothing_to_do(graph, "the network has no linear head — nothing to convert")
        first = linears[0]
        start = graph.node(chain[0].inputs[0]) if chain[0].inputs[0] != INPUT else None
        why = _why_not(graph, report, start, chain, first)
        if why:
            refusal = located(first, f"cannot convert {first.name}: {why}")
            return finish(graph, [refusal], self.skip_unsupported)
        work = NodeList(graph)
        for node in linears:
            work.put(_as_conv(graph, node))
        work.remove(start.name)  # the flatten or global pooling, re-added after the last conv
        last = (linears[-1].name,)
        if start.type == "global_avg_pool":
            gap = start.replace(inputs=last)  # the same layer, moved after the convolutions
        else:
            gap = new_node(graph, work.fresh_name("gap"), "global_avg_pool", start, last)
        work.insert_after(linears[-1].name, gap)
        return Rewrite(work.graph())


def _head_chain(graph: Graph) -> list[Node]:
    """The single-input chain of head layers that ends the network, in spec order."""
    chain: list[Node] = []
    node = graph.output
    while node.type in HEAD_TYPES and len(node.inputs) == 1:
        chain.append(node)
        if node.inputs[0] == INPUT:
            break
        node = graph.node(node.inputs[0])
    return chain[::-1]


def _why_not(graph: Graph, report: ShapeReport, start: Node | None, chain: list[Node], first: Node) -> str | None:
    if start is None or start.type not in VECTORIZERS:
        what = "the network input" if start is None else f"{start.name}, a {start.type}"
        return f"the head starts at {what} — expected a flatten or global_avg_pool of a feature map"
    map_shape = report.shapes[start.inputs[0]]
    if len(map_shape) != 3:
        return f"{start.name} reads a flat vector, not a feature map"
    for node in [start, *chain[:-1]]:
        readers = graph.consumers(node.name)
        if len(readers) != 1:
            return f"{node.name} is read by {', '.join(n.name for n in readers)} — the head must be a plain chain"
    before_first = chain[: chain.index(first)]
    spatial = map_shape[1:] != (1, 1)
    norms = [n.name for n in before_first if n.type == "batch_norm"]
    if start.type == "flatten" and spatial and norms:
        return (
            f"{', '.join(norms)} normalises each of the {map_shape[0] * map_shape[1] * map_shape[2]} flattened"
            f" features of the {dims(map_shape)} map; on the map it would normalise {map_shape[0]} channels"
        )
    return None


def _as_conv(graph: Graph, linear: Node) -> Node:
    op = linear.op
    default_padding = graph.defaults.get("conv", {}).get("padding", "valid")
    padding = default_padding if default_padding in ("same", "valid") else "valid"  # equal for 1x1
    return new_node(
        graph,
        linear.name,
        "conv",
        linear,
        linear.inputs,
        filters=op.units,
        kernel=1,
        stride=1,
        padding=padding,
        dilation=1,
        groups=1,
        bias=op.bias,
        activation=op.activation,
        slope=op.slope,
        init=op.init,
        init_std=op.init_std,
    )
