"""The mutable scratchpad of one emission: ONNX nodes and initializers in emission order.

Only the emitter touches it; the IR stays frozen. Every ONNX node and initializer is named
after the spec layer it comes from (`conv1/conv`, `conv1`, `conv1.weight`), so a model
viewer and an error message both point back to the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from specc.errors import UserError
from specc.lowering import Step
from specc.ops import LayerOp, Shape


@dataclass(frozen=True)
class Layer:
    """What an op emitter needs to know about the step it emits (a lowered step: a fused
    activation is a step of its own, see `specc.lowering`)."""

    step: Step
    inputs: tuple[str, ...]  # ONNX value names of the step's inputs, in the node's order
    in_shapes: tuple[Shape, ...]  # per-sample shapes of those inputs
    out_shape: Shape

    @property
    def name(self) -> str:
        """The step's value name, which also names its ONNX node (`conv1/conv`, `conv1`)."""
        return self.step.name

    @property
    def op(self) -> LayerOp:
        return self.step.op


@dataclass
class Builder:
    """Collects nodes and initializers; checks each weight against the shape the op needs."""

    weights: dict[str, np.ndarray]
    opset: int
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)

    def add(self, op_type: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        """Append one node; returns its output value name."""
        assert name not in self._names, f"duplicate ONNX node name {name}"
        self._names.add(name)
        # Sorted attributes: the same call always serialises to the same bytes.
        node = helper.make_node(op_type, inputs, [output], name=name, **dict(sorted(attrs.items())))
        self.nodes.append(node)
        return output

    def weight(self, layer: Layer, suffix: str) -> str:
        """The initializer `<spec layer>.<suffix>` from the weights, checked against the shape
        the op table declares for it; returns its name."""
        shape = layer.op.weights(list(layer.in_shapes))[suffix]
        key = f"{layer.step.layer}.{suffix}"
        return self.const(key, require_weight(self.weights, key, shape))

    def const(self, name: str, array: np.ndarray) -> str:
        """A float32 (or integer, as given) initializer."""
        if array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        array = np.ascontiguousarray(array)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name


def require_weight(weights: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """`weights[key]` as an array of `shape`, or a one-line UserError naming the key."""
    if key not in weights:
        raise UserError(f"weights: no '{key}' — the weights do not match this spec")
    array = np.asarray(weights[key])
    if tuple(array.shape) != tuple(shape):
        raise UserError(
            f"weights: '{key}' has shape {tuple(array.shape)}, the spec needs {tuple(shape)}"
            " — the weights do not match this spec"
        )
    return array
