"""`emit_explain`: an ONNX model that computes a guided-backprop, deconvnet or saliency map
itself — the forward pass up to the layer, then the backward pass written out as ONNX nodes
(`specc_explain_onnx.backward`) — so a deployment needs onnxruntime alone.

Inputs: `input` (N, C, H, W) and, unless a unit was fixed at compile time, `unit_mask`
(N, *layer shape). The seed at the layer is its activation times the unit mask (the paper:
the unit keeps its activation, every other activation of the layer is zero); a fixed unit
is a constant mask. A mask input lets one model serve any unit, or several units summed.
Outputs: `reconstruction` (N, C, H, W), the map in input space, and `activation`, the
layer's output (to choose units from).

The forward part is `specc_onnx.emit`'s (the deployed network; batch_norm kept as a node
unless asked, see `emit_explain`); max-pool nodes gain their Indices output for the switches. Nodes the maps
do not need (the layers after the chosen one) are pruned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from specc.errors import UserError, did_you_mean
from specc.ir import INPUT, Graph
from specc.shapes import infer
from specc_explain_onnx.backward import BACKWARD, METHODS
from specc_onnx import DEFAULT_OPSET, emit, fold_batch_norm
from specc_onnx.builder import require_weight
from specc_onnx.emit import make_model
from specc_onnx.metadata import build_metadata
from specc_onnx.verify import onnx_shapes

MIN_OPSET = 16  # ScatterElements with reduction="add" (the max-pool switches)
MASK_INPUT = "unit_mask"
OUTPUTS = ("reconstruction", "activation")


@dataclass
class Emitter:
    """The scratchpad of the backward nodes: values, shapes and weights of the forward."""

    method: str
    values: dict[str, str]  # layer (or `input`) -> ONNX value of its output
    shapes: dict[str, tuple[int, ...]]  # per-sample shapes, `input` included
    weights: dict[str, np.ndarray]
    existing: set[str]  # initializer names of the forward model
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    pool_indices: dict[str, str] = field(default_factory=dict)

    def node(self, op_type: str, inputs: list[str], outputs, **attrs):
        """Append a node named after its (first) output; returns the output name(s)."""
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **dict(sorted(attrs.items()))))
        return outputs

    def const(self, name: str, array: np.ndarray) -> str:
        if name not in self.existing:
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
            self.existing.add(name)
        return name

    def scalar(self, value: float) -> str:
        return self.const(f"explain/scalar/{value!r}", np.array(value, dtype=np.float32))

    @property
    def zero(self) -> str:
        return self.scalar(0.0)

    def weight(self, key: str) -> str:
        assert key in self.existing, f"the forward model has no initializer {key}"
        return key

    def array(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(require_weight(self.weights, key, shape))

    def value(self, layer: str) -> str:
        return self.values[layer]

    def shape(self, layer: str) -> tuple[int, ...]:
        return self.shapes[layer]

    def indices(self, layer: str) -> str:
        return self.pool_indices[layer]


def emit_explain(
    graph: Graph,
    weights: dict[str, np.ndarray],
    *,
    method: str,
    layer: str,
    unit=None,
    opset: int = DEFAULT_OPSET,
    batch: str | int = "dynamic",
    fold_bn: bool = False,
    metadata: dict | None = None,
) -> onnx.ModelProto:
    """The explain model of `graph` with `weights` (state_dict names, numpy arrays): `method`'s
    map of `unit` of `layer` (a `specc_viz.units` Channel/Position, "C" or "C,Y,X"; None adds
    the `unit_mask` input). The logits are a layer too: the softmax's input.

    `fold_bn` is off by default: folded weights round the forward values differently from the
    torch model, and a ReLU mask at a value within rounding of zero may flip, which changes
    the map by far more than the 1e-4 parity allows. Unfolded, batch_norm's backward is one Mul."""
    if method not in METHODS:
        raise UserError(f"--explain {method}: expected one of {', '.join(METHODS)}")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: explain models need opset {MIN_OPSET} or newer (ScatterElements add)")
    logits = graph.output.inputs[0] if graph.output.type == "softmax" else graph.output.name
    _check_layer(graph, layer, logits)
    spec_graph = graph
    graph, weights, folded = _maybe_fold(graph, weights, layer, fold_bn)
    forward = emit(graph, weights, opset=opset, batch=batch, output="logits", fold_bn=False)
    shapes = {INPUT: graph.input_shape, **infer(graph).shapes}
    values = _layer_values(graph, forward, logits)
    steps = [graph.node(n) for n in _needed(graph, layer)]
    e = Emitter(method, values, shapes, weights, {t.name for t in forward.graph.initializer})
    forward_nodes = list(forward.graph.node)
    for step in steps:
        if step.type == "max_pool":
            e.pool_indices[step.name] = _with_indices(forward_nodes, step.name)

    mask_inputs = []
    shape = shapes[layer]
    batch_dim = "batch" if batch == "dynamic" else int(batch)
    if unit is None:
        mask = MASK_INPUT
        mask_inputs.append(helper.make_tensor_value_info(MASK_INPUT, TensorProto.FLOAT, [batch_dim, *shape]))
    else:
        mask = e.const("explain/unit_mask", _unit_mask(unit, shape, layer)[None])
    seed = e.node("Mul", [values[layer], mask], "explain/seed")
    grads: dict[str, str] = {layer: seed}
    for step in reversed(steps):
        g = grads.pop(step.name, None)
        if g is None:
            continue
        for i, (src, signal) in enumerate(zip(step.inputs, BACKWARD[step.type](e, step, g))):
            grads[src] = signal if src not in grads else e.node("Add", [grads[src], signal], f"{step.name}/grad/sum{i}")
    e.node("Identity", [grads[INPUT]], "reconstruction")
    e.node("Identity", [values[layer]], "activation")

    outputs = [
        helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, [batch_dim, *graph.input_shape]),
        helper.make_tensor_value_info("activation", TensorProto.FLOAT, [batch_dim, *shape]),
    ]
    nodes = _prune(forward_nodes + e.nodes, set(OUTPUTS))
    used = {name for node in nodes for name in node.input}
    initializers = [t for t in list(forward.graph.initializer) + e.initializers if t.name in used]
    onnx_graph = helper.make_graph(
        nodes,
        f"{spec_graph.name}_{method}_{layer}",
        [*forward.graph.input, *mask_inputs],
        outputs,
        initializer=initializers,
        doc_string=f"{method} map of {_describe(unit)} of layer {layer} of {spec_graph.name}",
    )
    model = make_model(onnx_graph, opset, onnx_graph.doc_string)
    explain = {"method": method, "layer": layer, "unit": _describe(unit), "seed": "activation * unit mask"}
    props = build_metadata(
        spec_graph, output="reconstruction", folded=folded, extra={**(metadata or {}), "explain": explain}
    )
    helper.set_model_props(model, props)
    return model


def check_explain_model(model: onnx.ModelProto, graph: Graph) -> None:
    """onnx's checker (full) and strict shape inference; the map must have the input's shape."""
    onnx.checker.check_model(model.SerializeToString(), full_check=True)
    shapes = onnx_shapes(model)
    got = shapes["reconstruction"]
    if tuple(got[1:]) != tuple(graph.input_shape):
        raise AssertionError(f"{graph.name}: onnx infers reconstruction {got}, expected (N, {graph.input_shape})")


def _check_layer(graph: Graph, layer: str, logits: str) -> None:
    if layer not in graph.by_name:
        raise UserError(f"--layer {layer}: no such layer in '{graph.name}'{did_you_mean(layer, graph.by_name)}")
    if layer not in nx.ancestors(graph.nx, logits) | {logits}:
        raise UserError(f"--layer {layer}: not computed on the way to the logits — start from '{logits}' for a class")


def _maybe_fold(graph: Graph, weights: dict, layer: str, fold_bn: bool):
    """Fold batch_norm unless the chosen layer is one of a folded pair (its value would change)."""
    if not fold_bn:
        return graph, weights, ()
    result = fold_batch_norm(graph, weights)
    if any(layer in pair for pair in result.folded):
        return graph, weights, ()
    return result.graph, result.weights, result.folded


def _layer_values(graph: Graph, model: onnx.ModelProto, logits: str) -> dict[str, str]:
    produced = {out for node in model.graph.node for out in node.output}
    values = {INPUT: model.graph.input[0].name}
    for node in graph.topo_order():
        if node.name in produced:
            values[node.name] = node.name
        elif node.type == "dropout":
            values[node.name] = values[node.inputs[0]]  # emits nothing: reads its input
    values[logits] = model.graph.output[0].name
    return values


def _needed(graph: Graph, layer: str) -> list[str]:
    needed = nx.ancestors(graph.nx, layer) | {layer}
    return [n.name for n in graph.topo_order() if n.name in needed]


def _with_indices(nodes: list[onnx.NodeProto], layer: str) -> str:
    """Give the forward MaxPool of `layer` its optional Indices output; returns its name."""
    node = next(n for n in nodes if n.name == layer and n.op_type == "MaxPool")
    if len(node.output) == 1:
        node.output.append(f"{layer}/indices")
    return node.output[1]


def _prune(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes the outputs depend on, in their original (topological) order."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1]


def _unit_mask(unit, shape: tuple[int, ...], layer: str) -> np.ndarray:
    from specc_explain_onnx.units import parse

    channel, position = parse(unit)
    mask = np.zeros(shape, dtype=np.float32)
    if not 0 <= channel < shape[0]:
        raise UserError(f"--unit {_describe(unit)}: layer '{layer}' has {shape[0]} channels (0..{shape[0] - 1})")
    if position is None:
        mask[channel] = 1.0
        return mask
    if len(shape) != 3 or not (0 <= position[0] < shape[1] and 0 <= position[1] < shape[2]):
        raise UserError(f"--unit {_describe(unit)}: outside layer '{layer}' of shape {'x'.join(map(str, shape))}")
    mask[channel, position[0], position[1]] = 1.0
    return mask


def _describe(unit) -> str:
    if unit is None:
        return "the unit_mask input"
    from specc_explain_onnx.units import parse

    channel, position = parse(unit)
    return f"{channel}" if position is None else f"{channel},{position[0]},{position[1]}"
