"""Lowering: a graph's layers as the steps backends compute, with every fused activation made
a step of its own.

A conv or linear layer with `activation: relu` is one layer of the spec but two computations.
Lowering writes it as two steps — the layer without its activation, whose value is named
`<layer>/<type>` (`conv1/conv`), then the activation as a standalone op (`relu`), whose value
keeps the layer's name, so `conv1` is still the rectified output that captures, explanations
and ONNX value names refer to. Both steps belong to layer `conv1` (its weights, its module).

This is the one place where a fused activation is taken apart: the PyTorch module and its
generated code, the ONNX emitter and both backward engines walk these steps and so see one
form of every activation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from specc.ir import Node
from specc.ops import LayerOp, Shape


@dataclass(frozen=True)
class Step:
    """One computation: `op` applied to the values `inputs`, giving the value `name`."""

    name: str  # the value it computes; a spec layer's output keeps the layer's name
    layer: str  # the spec layer it belongs to: its weights, its module, its messages
    op: LayerOp
    inputs: tuple[str, ...]

    @property
    def kind(self) -> str:
        return self.op.kind


def pre_activation(node: Node) -> str:
    """The value name of a layer's output before its fused activation."""
    return f"{node.name}/{node.type}"


def lower_node(node: Node) -> list[Step]:
    """The steps of one layer: itself, or itself without its activation and then that activation."""
    activation = node.op.activation_op()
    if activation is None:
        return [Step(node.name, node.name, node.op, node.inputs)]
    pre = pre_activation(node)
    return [
        Step(pre, node.name, node.op.without_activation(), node.inputs),
        Step(node.name, node.name, activation, (pre,)),
    ]


def lower(nodes: Iterable[Node]) -> list[Step]:
    """The steps of `nodes` (in the order given, normally topological), activations split off."""
    return [step for node in nodes for step in lower_node(node)]


def step_shapes(steps: Iterable[Step], shapes: dict[str, Shape]) -> dict[str, Shape]:
    """Per-sample shapes of every step's value (a pre-activation value has its layer's shape),
    from the shapes of the layers (and `input`)."""
    out = dict(shapes)
    for step in steps:
        out[step.name] = shapes[step.layer]
    return out
