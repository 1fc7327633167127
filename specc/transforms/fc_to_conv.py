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
from specc.ops import OPS, Conv, GlobalAvgPool
from specc.shapes import ShapeReport
from specc.transforms.base import Rewrite, Transform, finish, located, nothing_to_do, skip_unsupported_option
from specc.transforms.rewrite import NodeList, dims, new_node

# What the head's vector becomes: each layer with a width turns into a 1x1 `conv`, and a
# `global_avg_pool` after the last of them turns the map back into the vector.
CONV, POOLING = Conv.kind, GlobalAvgPool.kind
_VECTORIZERS = " or ".join(kind for kind, cls in OPS.items() if cls.vectorizes)


@dataclass(frozen=True)
class FcToConv(Transform):
    """Replace a flatten + linear head by 1x1 convolutions and global average pooling."""

    name: ClassVar[str] = "fc_to_conv"
    help: ClassVar[str] = "turn a flatten + linear head into 1x1 convolutions + global average pooling"
    rationale: ClassVar[str] = (
        "Section 2 of the paper (after Network in Network): a classifier of 1x1 convolutions and "
        "global averaging has fewer parameters and works on any input size; on a 1x1 map it "
        "computes the same function, and --weights reshapes the trained linear weights."
    )
    skip_unsupported: bool = skip_unsupported_option()

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        chain = _head_chain(graph)
        dense = [n for n in chain if n.op.width_field is not None]  # the linear layers
        if not dense:
            return nothing_to_do(graph, "the network has no linear head — nothing to convert")
        first = dense[0]
        start = graph.node(chain[0].inputs[0]) if chain[0].inputs[0] != INPUT else None
        why = _why_not(graph, report, start, chain, first) or _exposed(graph, start, chain, dense[-1])
        if why:
            refusal = located(first, f"cannot convert {first.name}: {why}")
            return finish(graph, [refusal], self.skip_unsupported)
        assert start is not None, "_why_not refuses a head that starts at the network input"
        work = NodeList(graph)
        for node in dense:
            work.put(_as_conv(graph, node))
        work.remove(start.name)  # the flatten or global pooling, re-added after the last conv
        last = (dense[-1].name,)
        if start.type == POOLING:
            gap = start.replace(inputs=last)  # the same layer, moved after the convolutions
        else:
            gap = new_node(graph, work.fresh_name("gap"), POOLING, start, last)
        work.insert_after(dense[-1].name, gap)
        return Rewrite(work.graph())


def _head_chain(graph: Graph) -> list[Node]:
    """The single-input chain of head layers that ends the network, in spec order."""
    chain: list[Node] = []
    node = graph.output
    while node.op.head_layer and len(node.inputs) == 1:
        chain.append(node)
        if node.inputs[0] == INPUT:
            break
        node = graph.node(node.inputs[0])
    return chain[::-1]


def _why_not(graph: Graph, report: ShapeReport, start: Node | None, chain: list[Node], first: Node) -> str | None:
    if start is None or not start.op.vectorizes:
        what = "the network input" if start is None else f"{start.name}, a {start.type}"
        return f"the head starts at {what} — expected a {_VECTORIZERS} of a feature map"
    map_shape = report.shapes[start.inputs[0]]
    if len(map_shape) != 3:
        return f"{start.name} reads a flat vector, not a feature map"
    for node in [start, *chain[:-1]]:
        readers = graph.consumers(node.name)
        if len(readers) != 1:
            return f"{node.name} is read by {', '.join(n.name for n in readers)} — the head must be a plain chain"
    before_first = chain[: chain.index(first)]
    norms = [n.name for n in before_first if n.op.normalizes]
    # A normalisation sees one feature per channel only where the vector has one value per
    # channel (global pooling, or a flattened 1x1 map).
    if norms and report.shapes[start.name] != map_shape[:1]:
        return (
            f"{', '.join(norms)} normalises each of the {map_shape[0] * map_shape[1] * map_shape[2]} flattened"
            f" features of the {dims(map_shape)} map; on the map it would normalise {map_shape[0]} channels"
        )
    return None


def _exposed(graph: Graph, start: Node | None, chain: list[Node], last: Node) -> str | None:
    """An output listed in `outputs:` whose value the rewrite would change: the vectorizer
    goes away, and the layers up to the last linear one then hold maps instead of vectors
    (the last linear one's output moves to the global pooling after it)."""
    changed = [start, *chain[: chain.index(last)]] if start is not None else []
    listed = [n.name for n in changed if n is not None and n.name in graph.outputs]
    if not listed:
        return None
    return f"{', '.join(listed)} {'is a network output' if len(listed) == 1 else 'are network outputs'} (outputs:) whose value would change"


def _as_conv(graph: Graph, layer: Node) -> Node:
    """The 1x1 convolution of the same name, width and shared settings (bias, activation,
    slope, init) as a head layer with a width."""
    params = layer.op.params()
    shared = {k: v for k, v in params.items() if k in Conv.model_fields and k != "type"}
    default_padding = graph.defaults.get(CONV, {}).get("padding", "valid")
    padding = default_padding if default_padding in ("same", "valid") else "valid"  # equal for 1x1
    geometry = {"kernel": 1, "stride": 1, "padding": padding, "dilation": 1, "groups": 1}
    assert Conv.width_field is not None, "conv has a width field (filters)"
    width = {Conv.width_field: params[layer.op.width_field]}
    return new_node(graph, layer.name, CONV, layer, layer.inputs, **(shared | width | geometry))
