"""Recognising a multi-node decomposition by emitting it: a candidate specc layer is emitted
with specc's own op table (`specc_onnx.emit`) for the input shape at hand, and its nodes are
compared, in order, with the ONNX nodes from the one that triggered the pattern — op types,
attributes and every constant bit for bit; the values the candidate reads as weights are taken
from the model. So a decomposition comes back only as the layer that computes exactly it, and
a rule needs to name only the candidates, never restate the decomposition.

The nodes of one layer are contiguous in the graph (as specc and most exporters write them);
Constant nodes and shape-only nodes that precede the trigger count as part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from specc.errors import SpecError, UserError
from specc.ir import INPUT, Graph, Node
from specc.ops import OPS
from specc_onnx.importer.match import Match, NoMatch, Result
from specc_onnx.importer.view import ModelView, OnnxNode, decode_attribute, short_float

PROBE = "t"  # the probe layer's name; the emitter names its nodes `t` and `t/...`


@dataclass(frozen=True)
class _Probe:
    nodes: list[onnx.NodeProto]
    consts: dict[str, np.ndarray]  # initializers and Constant outputs of the probe model
    weights: dict[str, str]  # initializer name -> weight suffix (`t.weight` -> `weight`)


def match_emitted(view: ModelView, node: OnnxNode, candidates: list[dict], what: str) -> Result:
    """The first candidate op (a dict of layer fields) whose emission is the run of nodes
    ending the layer that `node` starts; NoMatch saying so when none is."""
    data = _data_input(view, node)
    if data is None:
        return NoMatch(f"it reads no layer output — not specc's {what}")
    shape = view.shape(data)
    if len(shape) not in (2, 4) or not all(isinstance(d, int) for d in shape[1:]):
        return NoMatch(f"the shape of its input is unknown — cannot compare it with specc's {what}")
    for op in candidates:
        probe = _emit_probe(op, tuple(int(d) for d in shape[1:]))
        if probe is None:
            continue
        found = _compare(view, node, data, probe)
        if isinstance(found, Match):
            return Match(op, (data,), found.nodes, node, found.weights)
    return NoMatch(f"not the nodes specc emits for {what}")


def _data_input(view: ModelView, node: OnnxNode) -> str | None:
    data = [v for v in node.inputs if v and v not in view.shape_only]
    return data[0] if data else None


def _emit_probe(op: dict, shape: tuple[int, ...]) -> _Probe | None:
    """The nodes specc emits for `op` on a per-sample input `shape` (a flat vector comes in
    through a flatten of a Cx1x1 map); None for a candidate the op table refuses."""
    from specc_onnx.emit import emit
    from specc_onnx.weights import weight_shapes

    try:
        layer = OPS[op["type"]].model_validate(op)
        if len(shape) == 1:
            nodes = (Node("f", OPS["flatten"](), (INPUT,)), Node(PROBE, layer, ("f",)))
            graph = Graph("probe", (shape[0], 1, 1), None, nodes)
        else:
            graph = Graph("probe", (shape[0], shape[1], shape[2]), None, (Node(PROBE, layer, (INPUT,)),))
        zeros = {k: np.zeros(s, np.float32) for k, s in weight_shapes(graph).items()}
        model = emit(graph, zeros, fold_bn=False)
    except (ValueError, SpecError, UserError):  # pydantic's ValidationError is a ValueError
        return None
    ours = [n for n in model.graph.node if n.name == PROBE or n.name.startswith(PROBE + "/")]
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in ours:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    weights = {k: k.split(".", 1)[1] for k in zeros if k.startswith(PROBE + ".")}
    return _Probe(ours, consts, weights)


def _compare(view: ModelView, trigger: OnnxNode, data: str, probe: _Probe) -> Match | NoMatch:
    """The model's nodes that are the probe's, node for node, with the weights they read."""
    lead = next((i for i, n in enumerate(probe.nodes) if not _const_only(n, probe)), None)
    start = trigger.index - (lead or 0)
    if lead is None or start < 0 or start + len(probe.nodes) > len(view.nodes):
        return NoMatch("no room")
    ours = view.nodes[start : start + len(probe.nodes)]
    mapping: dict[str, str] = {}
    weights: dict[str, np.ndarray] = {}
    for theirs, emitted in zip(ours, probe.nodes):
        if theirs.op_type != emitted.op_type or len(theirs.inputs) != len(emitted.input):
            return NoMatch("different nodes")
        if emitted.op_type == "Constant":
            if not _same_array(view.const(theirs.output), probe.consts[emitted.output[0]]):
                return NoMatch("a different constant")
        elif _attrs(emitted) != theirs.attrs:
            return NoMatch("different attributes")
        for value, ref in zip(theirs.inputs, emitted.input):
            if not _same_input(view, value, ref, data, probe, mapping, weights):
                return NoMatch("different inputs")
        mapping.update(zip(emitted.output, theirs.outputs))
    inner = {o for n in ours[:-1] for o in n.outputs}
    covered = {n.index for n in ours}
    if any(view.is_output(v) or any(r.index not in covered for r in view.consumers(v)) for v in inner):
        return NoMatch("an inner value is read elsewhere")
    return Match({}, (data,), tuple(ours), trigger, weights)


def _const_only(node: onnx.NodeProto, probe: _Probe) -> bool:
    return node.op_type == "Constant" or all(not v or v in probe.consts for v in node.input)


def _same_input(view, value, ref, data, probe: _Probe, mapping, weights) -> bool:
    if not ref or not value:
        return ref == value
    if ref in probe.weights:
        array = view.const(value)
        if array is None:
            return False
        weights[probe.weights[ref]] = array
        return True
    if ref in probe.consts:
        return _same_array(view.const(value), probe.consts[ref])
    if ref in mapping:
        return mapping[ref] == value
    return value == data  # the layer's own input


def _same_array(a: np.ndarray | None, b: np.ndarray) -> bool:
    return a is not None and a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: decode_attribute(a) for a in node.attribute}


def first_const(view: ModelView, node: OnnxNode) -> float | None:
    """The one-number constant among `node`'s inputs, if there is one."""
    for value in node.inputs:
        array = view.const(value)
        if array is not None and array.size == 1:
            return short_float(float(array.reshape(-1)[0]))
    return None


def following(view: ModelView, node: OnnxNode, op_type: str, within: int = 16) -> OnnxNode | None:
    """The first `op_type` node among the `within` nodes after `node`."""
    for other in view.nodes[node.index + 1 : node.index + 1 + within]:
        if other.op_type == op_type:
            return other
    return None
