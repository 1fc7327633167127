"""Patterns of the layers that join, gate or reshape branches, and of the nodes specc drops:
the inverse of `add`, `concat`, `softmax` in `specc_onnx.ops` and of `mul`, `pad`,
`log_softmax`, `identity`, `dropout`. These read layer values only: an operand that is a
stored constant (a bias added by hand, a fixed scale) has no specc layer and is refused."""

from __future__ import annotations

from specc_onnx.importer.match import Match, NoMatch, Result, const_input
from specc_onnx.importer.patterns_activations import gelu_erf
from specc_onnx.importer.view import ModelView, OnnxNode, short_float

ONNX_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}
# Nodes that pass their input on unchanged in inference: the importer aliases their output.
PASS_THROUGH = ("Dropout", "Identity")


def _data_inputs(view: ModelView, node: OnnxNode, what: str) -> tuple[str, ...] | NoMatch:
    constants = [v for v in node.inputs if v in view.shape_only]
    if constants:
        return NoMatch(f"it {what} the constant '{constants[0]}' — specc's {node.op_type.lower()} joins layer outputs")
    return tuple(node.inputs)


def _rank(view: ModelView, value: str) -> int:
    return len(view.shape(value))


def _axis_is_channels(view: ModelView, node: OnnxNode, default: int = 1) -> bool:
    rank = _rank(view, node.inputs[0])
    axis = int(node.attrs.get("axis", default))
    return rank >= 2 and axis % rank == 1


def add(view: ModelView, node: OnnxNode) -> Result:
    inputs = _data_inputs(view, node, "adds")
    if isinstance(inputs, NoMatch):
        return inputs
    shapes = {view.shape(v) for v in inputs}
    if len(shapes) != 1:
        return NoMatch("its operands have different shapes — specc's add sums equal shapes (no broadcasting)")
    return Match({"type": "add"}, inputs, (node,), node)


def concat(view: ModelView, node: OnnxNode) -> Result:
    if not _axis_is_channels(view, node):
        return NoMatch(f"axis {node.attrs.get('axis')} — specc's concat joins channels (axis 1)")
    inputs = _data_inputs(view, node, "concatenates")
    return inputs if isinstance(inputs, NoMatch) else Match({"type": "concat"}, inputs, (node,), node)


def mul(view: ModelView, node: OnnxNode) -> Result:
    """A product of layers; a flat (N, C) gate unsqueezed to (N, C, 1, 1) for it (how specc
    emits squeeze-and-excitation) is read as the gate itself, the Unsqueeze covered."""
    inputs = _data_inputs(view, node, "multiplies by")
    if isinstance(inputs, NoMatch):
        gelu = gelu_erf(view, node)  # x · (1/√2) begins GELU's erf form
        return gelu if isinstance(gelu, Match) else inputs
    operands, covered = [], []
    for value in inputs:
        source = view.producer.get(value)
        if source is not None and source.op_type == "Unsqueeze" and _gate_of(view, source):
            operands.append(source.inputs[0])
            covered.append(source)
        else:
            operands.append(value)
    return Match({"type": "mul"}, tuple(operands), (*covered, node), node)


def _gate_of(view: ModelView, node: OnnxNode) -> bool:
    """An Unsqueeze of (N, C) to (N, C, 1, 1) that only a Mul reads."""
    before, after = view.shape(node.inputs[0]), view.shape(node.output)
    return len(before) == 2 and after[1:] == (before[1], 1, 1) and len(view.consumers(node.output)) == 1


def unsqueeze(view: ModelView, node: OnnxNode) -> Result:
    reader = view.consumers(node.output)
    if len(reader) == 1 and reader[0].op_type == "Mul" and _gate_of(view, node):
        return mul(view, reader[0])  # the gate of a channel product: the Mul covers it
    return NoMatch("specc imports an Unsqueeze only as the (N, C) -> (N, C, 1, 1) gate of a Mul")


def softmax(view: ModelView, node: OnnxNode) -> Result:
    if not _axis_is_channels(view, node, default=-1):
        return NoMatch(f"axis {node.attrs.get('axis', -1)} — specc's softmax runs over axis 1 (classes)")
    return Match({"type": "softmax"}, (node.inputs[0],), (node,), node)


def log_softmax(view: ModelView, node: OnnxNode) -> Result:
    if not _axis_is_channels(view, node, default=-1):
        return NoMatch(f"axis {node.attrs.get('axis', -1)} — specc's log_softmax runs over axis 1")
    return Match({"type": "log_softmax"}, (node.inputs[0],), (node,), node)


def pad(view: ModelView, node: OnnxNode) -> Result:
    data = node.inputs[0]
    mode = node.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ONNX_PAD_MODES:
        return NoMatch(f"mode {mode} — specc pads constant, reflect or edge (replicate)")
    pads = const_input(view, node, 1, "pads")
    if isinstance(pads, NoMatch):
        return pads
    if len(node.inputs) > 3 and node.inputs[3]:
        return NoMatch("it pads selected axes only (axes input) — not supported")
    pads = [int(p) for p in pads.reshape(-1)]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        return NoMatch(f"pads {pads} — specc pads H and W of an NxCxHxW map by >= 0")
    top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
    op: dict = {"type": "pad", "padding": [top, bottom, left, right], "mode": ONNX_PAD_MODES[mode]}
    if mode == "constant" and len(node.inputs) > 2 and node.inputs[2]:
        value = const_input(view, node, 2, "fill value")
        if isinstance(value, NoMatch):
            return value
        op["value"] = short_float(float(value.reshape(-1)[0]))
    return Match(op, (data,), (node,), node)


PATTERNS = {
    "Add": add,
    "Sum": add,
    "Concat": concat,
    "Mul": mul,
    "Unsqueeze": unsqueeze,
    "Softmax": softmax,
    "LogSoftmax": log_softmax,
    "Pad": pad,
}
