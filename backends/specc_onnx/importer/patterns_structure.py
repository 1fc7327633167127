"""Patterns of the layers that join, gate or reshape branches, and of the nodes specc drops:
the inverse of `add`, `concat`, `softmax` in `specc_onnx.ops` and of `mul`, `pad`,
`log_softmax`, `identity`, `dropout`. These read layer values only: an operand that is a
stored constant (a bias added by hand, a fixed scale) has no specc layer and is refused."""

from __future__ import annotations

from dataclasses import replace

from specc_onnx.importer.match import Match, NoMatch, Result, const_input, only_reader
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
    merged = _merged_into_window(view, node, op, (top, left, bottom, right))
    return merged if isinstance(merged, Match) else Match(op, (data,), (node,), node)


def _merged_into_window(view: ModelView, node: OnnxNode, op: dict, sides: tuple[int, int, int, int]) -> Result:
    """A zero Pad read only by a Conv (or an AveragePool that counts padded cells), when its
    sides added to the window's own pads are symmetric: that window, reading the Pad's input
    — what PyTorch's `F.pad` then `nn.Conv2d` computes, as one specc layer."""
    from specc_onnx.importer.patterns_layers import PATTERNS as LAYERS  # the layers import this module's users

    reader = only_reader(view, node.output)
    if op["mode"] != "constant" or op.get("value", 0.0) != 0.0 or reader is None:
        return NoMatch("not a zero pad read by one window")
    if reader.op_type not in ("Conv", "AveragePool") or reader.inputs[0] != node.output:
        return NoMatch("not read by a Conv or AveragePool")
    if reader.op_type == "AveragePool" and not reader.attrs.get("count_include_pad", 0):
        return NoMatch("an average that leaves padded cells out differs from one over zeros")
    own = [int(p) for p in reader.attrs.get("pads", [0, 0, 0, 0])]
    if len(own) != 4 or reader.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        return NoMatch("the window's own pads are not explicit 2-D pads")
    total = [a + b for a, b in zip(own, sides)]
    if total[:2] != total[2:]:
        return NoMatch(f"pads {total} would be asymmetric")
    window = replace(reader, inputs=(node.inputs[0], *reader.inputs[1:]), attrs={**reader.attrs, "pads": total})
    match = LAYERS[reader.op_type](view, window)
    if not isinstance(match, Match):
        return match
    return Match(match.op, match.inputs, (node, *match.nodes), match.anchor, match.weights)


NEAREST_FLOOR = ("asymmetric", "floor")  # PyTorch's nearest: src = floor(dst · in / out)
ALIGN = {"pytorch_half_pixel": False, "half_pixel": False, "align_corners": True}


def resize(view: ModelView, node: OnnxNode) -> Result:
    """Resize as `upsample`: nearest (asymmetric, floor: PyTorch's) or linear (half-pixel or
    align-corners); `scale` for a whole factor given as scales, else `size`."""
    text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in node.attrs.items()}
    mode, where = text.get("mode", "nearest"), text.get("coordinate_transformation_mode", "half_pixel")
    data = node.inputs[0]
    before, after = view.shape(data), view.shape(node.output)
    if len(before) != 4 or len(after) != 4 or not all(isinstance(d, int) for d in (*before[1:], *after[1:])):
        return NoMatch("not a resize of an NxCxHxW map of known size")
    if after[1] != before[1] or text.get("antialias", 0):
        return NoMatch("it resizes channels or antialiases — specc's upsample scales H and W")
    if mode == "nearest":
        if (where, text.get("nearest_mode", "round_prefer_floor")) != NEAREST_FLOOR:
            return NoMatch(
                f"nearest with {where}/{text.get('nearest_mode', 'round_prefer_floor')} — specc's is PyTorch's (asymmetric, floor)"
            )
        op: dict = {"type": "upsample", "mode": "nearest"}
    elif mode == "linear" and where in ALIGN:
        op = {"type": "upsample", "mode": "bilinear", "align_corners": ALIGN[where]}
    else:
        return NoMatch(f"mode {mode} with {where} coordinates — specc upsamples nearest or bilinear")
    size = [int(after[2]), int(after[3])]
    scales = view.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    factors = {size[0] / before[2], size[1] / before[3]}
    if scales is not None and scales.size == 4 and len(factors) == 1 and float(next(iter(factors))).is_integer():
        op["scale"] = int(next(iter(factors)))
    else:
        op["size"] = size
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
    "Resize": resize,
}
