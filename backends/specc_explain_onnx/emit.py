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

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from specc.backward import METHODS, run_backward
from specc.errors import UserError, did_you_mean
from specc.ir import INPUT, Graph
from specc.lowering import Step, lower, step_shapes
from specc.ops_pooling import padded_windows
from specc.shapes import infer
from specc.units import Position, as_unit, check_unit
from specc_onnx import DEFAULT_OPSET, emit, fold_batch_norm
from specc_onnx.emit import make_model
from specc_onnx.metadata import build_metadata
from specc_onnx.verify import onnx_shapes

MIN_OPSET = 16  # ScatterElements with reduction="add" (the max-pool switches)
MASK_INPUT = "unit_mask"
_RELATIONS = {">": "Greater", ">=": "GreaterOrEqual", "<": "Less", "<=": "LessOrEqual"}
SEEDS = ("auto", "activation", "one")
OUTPUTS = ("reconstruction", "activation")


@dataclass
class OnnxGrad:
    """The builder `specc.backward` runs on, writing ONNX nodes: values are ONNX value names."""

    method: str
    values: dict[str, str]  # step (or `input`) -> ONNX value of its output
    shapes: dict[str, tuple[int, ...]]  # per-sample shapes, `input` included
    existing: set[str]  # initializer names of the forward model
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    forward_nodes: list[onnx.NodeProto] = field(default_factory=list)  # the forward model's, editable
    _count: int = 0
    opset: int = DEFAULT_OPSET  # the model's: Reduce* read their axes from an input from opset 18

    def node(self, op_type: str, inputs: list[str], outputs, **attrs):
        """Append a node named after its (first) output; returns the output name(s)."""
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **dict(sorted(attrs.items()))))
        return outputs

    def _fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}#{self._count}"

    def const_array(self, name: str, array: np.ndarray) -> str:
        if name not in self.existing:
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
            self.existing.add(name)
        return name

    def _scalar(self, value: float) -> str:
        return self.const_array(f"explain/scalar/{value!r}", np.array(value, dtype=np.float32))

    # -- GradBuilder: what the backward definitions read ------------------------------------
    def value(self, name: str) -> str:
        return self.values[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def weight(self, layer: str, suffix: str) -> str:
        key = f"{layer}.{suffix}"
        assert key in self.existing, f"the forward model has no initializer {key}"
        return key

    def const(self, name: str, data: list, shape: tuple[int, ...]) -> str:
        return self.const_array(name, np.asarray(data, dtype=np.float32).reshape(shape))

    # -- the rectifier operations -----------------------------------------------------------
    def relu(self, x: str) -> str:
        return self.node("Relu", [x], self._fresh(f"{x}/relu"))

    def leaky_relu(self, x: str, slope: float) -> str:
        return self.node("LeakyRelu", [x], self._fresh(f"{x}/leaky_relu"), alpha=float(slope))

    def threshold(self, g: str, y: str) -> str:
        alive = self.node("Greater", [y, self._scalar(0.0)], self._fresh(f"{g}/alive"))
        return self.node("Where", [alive, g, self._scalar(0.0)], self._fresh(f"{g}/masked"))

    def leaky_derivative(self, g: str, y: str, slope: float) -> str:
        alive = self.node("Greater", [y, self._scalar(0.0)], self._fresh(f"{g}/alive"))
        scaled = self.node("Mul", [g, self._scalar(slope)], self._fresh(f"{g}/scaled"))
        return self.node("Where", [alive, g, scaled], self._fresh(f"{g}/derivative"))

    # -- array operations ---------------------------------------------------------------------
    def add(self, a: str, b: str, where: str) -> str:
        return self.node("Add", [a, b], where)

    def sub(self, a: str, b: str, where: str) -> str:
        return self.node("Sub", [a, b], where)

    def mul(self, a: str, b: str, where: str) -> str:
        return self.node("Mul", [a, b], where)

    def div(self, a: str, b: str, where: str) -> str:
        return self.node("Div", [a, b], where)

    def scale(self, x: str, factor: float, where: str) -> str:
        return self.node("Mul", [x, self._scalar(factor)], where)

    def rsqrt(self, x: str, eps: float, where: str) -> str:
        shifted = self.node("Add", [x, self._scalar(eps)], f"{where}/shifted")
        root = self.node("Sqrt", [shifted], f"{where}/sqrt")
        return self.node("Reciprocal", [root], where)

    def per_channel(self, x: str, rank: int, where: str) -> str:
        shape = self.const_array(f"{where}/shape", np.array([1, -1] + [1] * (rank - 1), dtype=np.int64))
        return self.node("Reshape", [x, shape], where)

    def sum_channels(self, x: str, where: str) -> str:
        axes = self.const_array(f"{where}/axes", np.array([1], dtype=np.int64))
        return self.node("ReduceSum", [x, axes], where, keepdims=1)

    def matmul(self, g: str, w: str, where: str) -> str:
        return self.node("MatMul", [g, w], where)

    def conv_transpose(self, g, w, *, stride, pads, output_padding, groups, dilation, where: str) -> str:
        # kernel_shape is read from the weight's shape (an initializer).
        attrs = {"strides": list(stride), "pads": list(pads), "dilations": list(dilation)}
        return self.node("ConvTranspose", [g, w], where, group=groups, output_padding=list(output_padding), **attrs)

    def unpool_max(self, step: Step, g: str) -> str:
        # The forward MaxPool's Indices are flat over the whole N*C*H*W input; the signal is
        # scattered back to them with ScatterElements(reduction=add), since overlapping
        # windows may share a maximum (MaxUnpool would keep only one).
        where = f"{step.name}/grad"
        x = self.value(step.inputs[0])
        shape = self.node("Shape", [x], f"{where}/input_shape")
        flat = self.const_array(f"{where}/flat", np.array([-1], dtype=np.int64))
        blank = self.node("ConstantOfShape", [shape], f"{where}/blank", value=_float_tensor(0.0))
        zeros = self.node("Reshape", [blank, flat], f"{where}/zeros")
        switches = _with_indices(self.forward_nodes, step.name)  # the forward MaxPool's Indices output
        indices = self.node("Reshape", [switches, flat], f"{where}/switches")
        signal = self.node("Reshape", [g, flat], f"{where}/flat_signal")
        routed = self.node("ScatterElements", [zeros, indices, signal], f"{where}/routed", axis=0, reduction="add")
        return self.node("Reshape", [routed, shape], f"{where}/unpooled")

    def expand_hw(self, g: str, shape: tuple[int, int, int], where: str) -> str:
        axes = self.const_array(f"{where}/axes", np.array([2, 3], dtype=np.int64))
        column = self.node("Unsqueeze", [g, axes], f"{where}/unsqueeze")  # (N, C, 1, 1)
        target = self.const_array(f"{where}/shape", np.array([1, *shape], dtype=np.int64))
        return self.node("Expand", [column, target], where)

    def reshape(self, g: str, shape: tuple[int, ...], where: str) -> str:
        target = self.const_array(f"{where}/shape", np.array([-1, *shape], dtype=np.int64))
        return self.node("Reshape", [g, target], where)

    def split_channels(self, g: str, sizes, where: str) -> list[str]:
        split = self.const_array(f"{where}/sizes", np.array(list(sizes), dtype=np.int64))
        return self.node("Split", [g, split], [f"{where}{i}" for i in range(len(sizes))], axis=1)

    # -- generic primitives (added with the pooling and normalisation families) ------------
    def _constant(self, name: str, array: np.ndarray) -> str:
        """A Constant node (strict shape inference reads its value: Reshape targets, axes)."""
        return self.node("Constant", [], name, value=numpy_helper.from_array(np.ascontiguousarray(array), name))

    def _reduce(self, op_type: str, x: str, axes, where: str, axes_input_from: int) -> str:
        if self.opset >= axes_input_from:
            axes_value = self._constant(f"{where}/axes", np.array(list(axes), dtype=np.int64))
            return self.node(op_type, [x, axes_value], where, keepdims=1)
        return self.node(op_type, [x], where, axes=list(axes), keepdims=1)

    def reduce_mean(self, x: str, axes, where: str) -> str:
        return self._reduce("ReduceMean", x, axes, where, axes_input_from=18)

    def reduce_sum(self, x: str, axes, where: str) -> str:
        return self._reduce("ReduceSum", x, axes, where, axes_input_from=13)

    def pow(self, x: str, exponent: float, where: str) -> str:
        return self.node("Pow", [x, self._scalar(exponent)], where)

    def sign(self, x: str, where: str) -> str:
        return self.node("Sign", [x], where)

    def unpool_windows(self, g: str, source: str, windows, where: str, magnitude: bool = False) -> str:
        # Each window's pixels gathered (N, C, P, K); ArgMax (the first maximum, as PyTorch's
        # kernels pick it) finds the switch's place in its window, a constant table its flat
        # position; the signal is scattered there, added where windows share a switch.
        channels, *cells_shape = self.shapes[source]
        size = int(np.prod(cells_shape))
        table = np.array(padded_windows([list(w) for w in windows]), dtype=np.int64)  # (P, K)
        cells, width = table.shape
        flat_shape = self._constant(f"{where}/flat_shape", np.array([0, channels, size], dtype=np.int64))
        flat = self.node("Reshape", [self.value(source), flat_shape], f"{where}/flat")  # (N, C, size)
        if magnitude:
            flat = self.node("Abs", [flat], f"{where}/magnitude")
        table_value = self.const_array(f"{where}/windows", table)
        gathered = self.node("Gather", [flat, table_value], f"{where}/gathered", axis=2)  # (N, C, P, K)
        first = self.node("ArgMax", [gathered], f"{where}/first", axis=3, keepdims=0, select_last_index=0)
        offsets = self.const_array(f"{where}/offsets", np.arange(cells, dtype=np.int64) * width)
        place = self.node("Add", [first, offsets], f"{where}/place")  # (N, C, P) into the flat table
        flat_table = self.const_array(f"{where}/table", table.reshape(-1))
        switches = self.node("Gather", [flat_table, place], f"{where}/switches", axis=0)  # (N, C, P)
        signal_shape = self._constant(f"{where}/signal_shape", np.array([0, channels, cells], dtype=np.int64))
        signal = self.node("Reshape", [g, signal_shape], f"{where}/signal")  # (N, C, P)
        shape = self.node("Shape", [flat], f"{where}/shape")
        zeros = self.node("ConstantOfShape", [shape], f"{where}/zeros", value=_float_tensor(0.0))
        routed = self.node("ScatterElements", [zeros, switches, signal], f"{where}/routed", axis=2, reduction="add")
        out_shape = self._constant(f"{where}/out_shape", np.array([0, channels, *cells_shape], dtype=np.int64))
        return self.node("Reshape", [routed, out_shape], f"{where}/unpooled")

    # -- generic primitives (added with the activation family) ------------------------------
    def exp(self, x: str, where: str) -> str:
        return self.node("Exp", [x], where)

    def tanh(self, x: str, where: str) -> str:
        return self.node("Tanh", [x], where)

    def sigmoid(self, x: str, where: str) -> str:
        return self.node("Sigmoid", [x], where)

    def erf(self, x: str, where: str) -> str:
        return self.node("Erf", [x], where)

    def softplus(self, x: str, where: str) -> str:
        return self.node("Softplus", [x], where)

    def affine(self, x: str, scale: float, shift: float, where: str) -> str:
        scaled = x if scale == 1 else self.node("Mul", [x, self._scalar(scale)], f"{where}/scaled")
        return scaled if shift == 0 else self.node("Add", [scaled, self._scalar(shift)], where)

    def compare(self, x: str, relation: str, value: float, where: str) -> str:
        return self.node(_RELATIONS[relation], [x, self._scalar(value)], where)

    def select(self, mask: str, a: str | float, b: str | float, where: str) -> str:
        values = [v if isinstance(v, str) else self._scalar(float(v)) for v in (a, b)]
        return self.node("Where", [mask, *values], where)

    def clip_mask(self, g: str, x: str, low: float, high: float, where: str) -> str:
        above = self.node("Greater", [x, self._scalar(low)], f"{where}/above")
        below = self.node("Less", [x, self._scalar(high)], f"{where}/below")
        inside = self.node("And", [above, below], f"{where}/mask")
        return self.node("Where", [inside, g, self._scalar(0.0)], where)

    # -- generic primitives (added with the structure family) -------------------------------
    def conv(self, x: str, w: str, *, stride, pads, groups, dilation, where: str) -> str:
        # kernel_shape is read from the weight's shape (an initializer).
        attrs = {"strides": list(stride), "pads": list(pads), "dilations": list(dilation)}
        return self.node("Conv", [x, w], where, group=groups, **attrs)

    def slice_axes(self, x: str, axes, starts, ends, where: str) -> str:
        bounds = [
            self._constant(f"{where}/{part}", np.array(list(values), dtype=np.int64))
            for part, values in (("starts", starts), ("ends", ends), ("axes", axes))
        ]
        return self.node("Slice", [x, *bounds], where)


def _float_tensor(value: float):
    return numpy_helper.from_array(np.array([value], dtype=np.float32))


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
