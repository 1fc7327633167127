"""`emit_explain`: an ONNX model that computes a guided-backprop, deconvnet or saliency map
itself — the forward pass up to the layer, then the backward pass of `specc.backward` written
out as ONNX nodes by `OnnxGrad` — so a deployment needs onnxruntime alone.

Inputs: `input` (N, C, H, W) and, unless a unit was fixed at compile time, `unit_mask`
(N, *layer shape). The seed at the layer is the unit mask itself (`seed="one"`: the gradient
of the unit's value, the convention for a class) or the layer's activation times the mask
(`seed="activation"`, the paper's deconvnet seed: the unit keeps its activation, every other
activation of the layer is zero); `auto` is one at the logits, activation elsewhere. A fixed
unit is a constant mask; a mask input lets one model serve any unit, or several units summed.
Outputs: `reconstruction` (N, C, H, W), the map in input space, and `activation`, the
layer's output (to choose units from).

The forward part is `specc_onnx.emit`'s (the deployed network; batch_norm kept as a node
unless asked, see `emit_explain`); max-pool nodes gain their Indices output for the switches.
Nodes the maps do not need (the layers after the chosen one) are pruned.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper

from specc.backward import METHODS, run_backward
from specc.errors import UserError, did_you_mean
from specc.ir import INPUT, Graph
from specc.lowering import Step, lower, step_shapes
from specc.shapes import infer
from specc.units import Position, as_unit, check_unit
from specc_explain_onnx.grad import OnnxGrad
from specc_onnx import DEFAULT_OPSET, emit, fold_batch_norm
from specc_onnx.emit import make_model
from specc_onnx.metadata import build_metadata
from specc_onnx.verify import onnx_shapes

MIN_OPSET = 16  # ScatterElements with reduction="add" (the max-pool switches)
MASK_INPUT = "unit_mask"
SEEDS = ("auto", "activation", "one")
OUTPUTS = ("reconstruction", "activation")


def emit_explain(
    graph: Graph,
    weights: dict[str, np.ndarray],
    *,
    method: str,
    layer: str,
    unit=None,
    seed: str = "auto",
    opset: int = DEFAULT_OPSET,
    batch: str | int = "dynamic",
    fold_bn: bool = False,
    metadata: dict | None = None,
) -> onnx.ModelProto:
    """The explain model of `graph` with `weights` (state_dict names, numpy arrays): `method`'s
    map of `unit` of `layer` (a `specc_viz.units` Channel/Position, "C" or "C,Y,X"; None adds
    the `unit_mask` input). The logits are a layer too: the softmax's input. `seed`: the
    map starts from the unit's "activation" (the paper's deconvnet seed) or from "one" on the
    unit (the gradient of its value, Captum's convention for a class); "auto" is one at the
    logits and activation elsewhere.

    `fold_bn` is off by default: folded weights round the forward values differently from the
    torch model, and a ReLU mask at a value within rounding of zero may flip, which changes
    the map by far more than the 1e-4 parity allows. Unfolded, batch_norm's backward is one Mul."""
    if method not in METHODS:
        raise UserError(f"--explain {method}: expected one of {', '.join(METHODS)}")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: explain models need opset {MIN_OPSET} or newer (ScatterElements add)")
    # A classifier's forward model ends at its logits; any other network's at its outputs.
    logits = graph.scores_layer() if graph.is_classifier else None
    _check_layer(graph, layer, logits)
    if seed not in SEEDS:
        raise UserError(f"--explain-seed {seed}: expected one of {', '.join(SEEDS)}")
    if seed == "auto":
        seed = "one" if layer == logits else "activation"
    spec_graph = graph
    graph, weights, folded = _maybe_fold(graph, weights, layer, fold_bn)
    forward = emit(graph, weights, opset=opset, batch=batch, output="logits", fold_bn=False)
    needed = nx.ancestors(graph.nx, layer) | {layer}
    steps = lower(n for n in graph.topo_order() if n.name in needed)
    shapes = step_shapes(steps, {INPUT: graph.input_shape, **infer(graph).shapes})
    values = _step_values(steps, forward, logits)
    e = OnnxGrad(method, values, shapes, {t.name for t in forward.graph.initializer})
    e.forward_nodes = list(forward.graph.node)
    e.opset = opset

    mask_inputs = []
    shape = shapes[layer]
    batch_dim = "batch" if batch == "dynamic" else int(batch)
    if unit is None:
        mask = MASK_INPUT
        mask_inputs.append(helper.make_tensor_value_info(MASK_INPUT, TensorProto.FLOAT, [batch_dim, *shape]))
    else:
        mask = e.const_array("explain/unit_mask", _unit_mask(unit, shape, layer)[None])
    if seed == "one":  # the unit mask itself, over the batch: the gradient of the unit's value
        batch_shape = e.node("Shape", [values[layer]], "explain/layer_shape")
        start = e.node("Expand", [mask, batch_shape], "explain/seed")
    else:  # the paper: the unit keeps its activation, every other activation is zero
        start = e.node("Mul", [values[layer], mask], "explain/seed")
    signal = run_backward(e, steps, layer, start)
    if signal is None:  # nothing reaches the input (cannot happen for a layer computed from it)
        signal = e.node("Mul", [values[INPUT], e._scalar(0.0)], "explain/no_signal")
    e.node("Identity", [signal], "reconstruction")
    e.node("Identity", [values[layer]], "activation")

    outputs = [
        helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, [batch_dim, *graph.input_shape]),
        helper.make_tensor_value_info("activation", TensorProto.FLOAT, [batch_dim, *shape]),
    ]
    nodes = _prune(e.forward_nodes + e.nodes, set(OUTPUTS))
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
    seed_text = "unit mask (1 on the unit)" if seed == "one" else "activation * unit mask"
    explain = {"method": method, "layer": layer, "unit": _describe(unit), "seed": seed_text}
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


def _check_layer(graph: Graph, layer: str, logits: str | None) -> None:
    if layer not in graph.by_name:
        raise UserError(f"--layer {layer}: no such layer in '{graph.name}'{did_you_mean(layer, graph.by_name)}")
    if logits is not None and layer not in nx.ancestors(graph.nx, logits) | {logits}:
        raise UserError(f"--layer {layer}: not computed on the way to the logits — start from '{logits}' for a class")
    if logits is None and not any(layer in nx.ancestors(graph.nx, o) | {o} for o in graph.output_names):
        raise UserError(f"--layer {layer}: feeds none of the network's outputs, so it is never computed")


def _maybe_fold(graph: Graph, weights: dict, layer: str, fold_bn: bool):
    """Fold batch_norm unless the chosen layer is one of a folded pair (its value would change)."""
    if not fold_bn:
        return graph, weights, ()
    result = fold_batch_norm(graph, weights)
    if any(layer in pair for pair in result.folded):
        return graph, weights, ()
    return result.graph, result.weights, result.folded


def _step_values(steps: list[Step], model: onnx.ModelProto, logits: str | None) -> dict[str, str]:
    """Each step's ONNX value in the forward model (dropout emits nothing: its input's; a
    classifier's logits are the graph output)."""
    produced = {out for node in model.graph.node for out in node.output}
    values = {INPUT: model.graph.input[0].name}
    for step in steps:
        if step.name in produced:
            values[step.name] = step.name
        else:  # no node of its own (dropout, identity), or the renamed logits (set below)
            values[step.name] = values[step.inputs[0]]
    if logits is not None:
        values[logits] = model.graph.output[0].name
    return values


def _prune(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes the outputs depend on, in their original (topological) order."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1]


def _unit(unit):
    """A unit in any accepted form (see `specc.units`), or a one-line `--unit` error."""
    try:
        return as_unit(unit)
    except ValueError as exc:
        raise UserError(f"--unit {unit}: {exc}") from None


def _unit_mask(unit, shape: tuple[int, ...], layer: str) -> np.ndarray:
    parsed = _unit(unit)
    try:
        check_unit(parsed, shape, layer)
    except ValueError as exc:
        raise UserError(f"--unit {parsed.text()}: {exc}") from None
    mask = np.zeros(shape, dtype=np.float32)
    if isinstance(parsed, Position):
        mask[parsed.channel, parsed.y, parsed.x] = 1.0
    else:
        mask[parsed.channel] = 1.0
    return mask


def _describe(unit) -> str:
    return "the unit_mask input" if unit is None else _unit(unit).text()
