"""`OnnxGrad`: the builder `specc.backward`'s definitions run on to write the backward pass
of an explanation as ONNX nodes. Values are ONNX value names; the forward model's nodes are
at hand (a max-pool's switches are its forward node's Indices output). `emit_explain` drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from specc.lowering import Step
from specc.ops_pooling import padded_windows
from specc_onnx import DEFAULT_OPSET

_RELATIONS = {">": "Greater", ">=": "GreaterOrEqual", "<": "Less", "<=": "LessOrEqual"}


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


def _with_indices(nodes: list[onnx.NodeProto], layer: str) -> str:
    """Give the forward MaxPool of `layer` its optional Indices output; returns its name."""
    node = next(n for n in nodes if n.name == layer and n.op_type == "MaxPool")
    if len(node.output) == 1:
        node.output.append(f"{layer}/indices")
    return node.output[1]
