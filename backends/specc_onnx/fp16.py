"""fp16 models for GPUs: a specc ONNX model with float16 weights and activations.

    model16 = to_fp16(emit(graph, weights))                 # fp32 in, fp32 out, fp16 inside
    model16 = to_fp16(emit(graph, weights), io_fp16=True)   # float16 in and out as well

The rewrite is specc's own, on the emitter's output (every node is named after its spec
layer, so a layer's nodes are known): float initializers and Constant values become
float16, and every float value a node reads is of the precision its layer runs in, with a
Cast inserted where two precisions meet.

Precision is decided per spec layer. A layer runs in fp32 when it holds a normalisation or
a softmax (FP32_OPS): their reductions sum squares or exponentials, which overflow fp16's
range (65,504) or lose the small terms of a long sum. Everything else (conv, linear,
pooling, activations, adds) runs in fp16. With fp32 I/O the graph input is cast to fp16
where it is first read and the outputs are cast back to fp32, so a caller feeds and gets
float32 exactly as from the fp32 model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from specc.errors import UserError

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP32_OPS = frozenset(
    {
        "Softmax",
        "LogSoftmax",
        "BatchNormalization",
        "InstanceNormalization",
        "LayerNormalization",
        "LRN",
        "ReduceMean",
        "Pow",
        "Sqrt",
    }
)
BOOL_OUTPUT_OPS = frozenset({"Greater", "Less", "Equal"})
FP16_MAX = float(np.finfo(np.float16).max)
# Parity: fp16 keeps 11 significant bits (unit roundoff 2**-11 = 4.9e-4). Rounding the weights
# alone moves specc's zoo models' outputs by 3e-4 to 2e-3 of their largest output; storing
# activations in fp16 (on a GPU) adds about one roundoff per layer. 1% of the largest output
# leaves room for both over tens of layers and still catches a wrong cast or a lost layer,
# which move outputs by their own size.
RTOL = 1e-2
ATOL = 1e-3


def layer_of(node: onnx.NodeProto) -> str:
    """The spec layer a node belongs to (`conv1/conv` and `conv1` are layer conv1)."""
    return node.name.split("/")[0]


def fp32_layers(model: onnx.ModelProto) -> set[str]:
    """The spec layers that stay in fp32 (they hold an op of FP32_OPS)."""
    return {layer_of(n) for n in model.graph.node if n.op_type in FP32_OPS}


def to_fp16(model: onnx.ModelProto, *, io_fp16: bool = False) -> onnx.ModelProto:
    """The fp16 model of a specc fp32 model (a new ModelProto; `model` is not changed).
    A UserError when a weight is beyond fp16's range (it would become infinity)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    keep = fp32_layers(model)
    rewrite = _Rewrite(g, io_fp16)
    nodes = [rewrite.node(n, FLOAT if layer_of(n) in keep else HALF) for n in model.graph.node]
    rewrite.nodes += [n for group in nodes for n in group]
    rewrite.outputs(io_fp16)
    del g.node[:]
    g.node.extend(rewrite.nodes)
    del g.initializer[:]
    g.initializer.extend(rewrite.initializers)
    del g.value_info[:]
    _set_precision_metadata(out, io_fp16, sorted(keep))
    return out


def _set_precision_metadata(model: onnx.ModelProto, io_fp16: bool, fp32: list[str]) -> None:
    """`specc.precision` says what runs in fp16; `specc.input` says the input's dtype."""
    props = {p.key: p.value for p in model.metadata_props}
    io = "float16" if io_fp16 else "float32"
    props["specc.precision"] = json.dumps({"compute": "float16", "io": io, "fp32_layers": fp32}, sort_keys=True)
    if "specc.input" in props:
        info = json.loads(props["specc.input"])
        info["dtype"] = io
        props["specc.input"] = json.dumps(info, sort_keys=True, separators=(",", ":"))
    del model.metadata_props[:]
    for key in sorted(props):
        model.metadata_props.add(key=key, value=props[key])


@dataclass(frozen=True)
class Parity:
    """fp16 against fp32 on the same random inputs (onnxruntime, CPU)."""

    max_abs_diff: float
    scale: float  # the largest |output| of the fp32 model
    tolerance: float
    images: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        return (
            f"max |fp16 - fp32| {self.max_abs_diff:.2e} on {self.images} random inputs, tolerance"
            f" {self.tolerance:.2e} ({RTOL:.0%} of the largest |output| {self.scale:.3g}, + {ATOL:g})"
        )


def check_parity(model32: onnx.ModelProto, model16: onnx.ModelProto, images: int = 2, seed: int = 0) -> Parity:
    """Run both models in onnxruntime's CPU provider on `images` standard-normal inputs (the
    scale of preprocessed images) and compare every output."""
    from specc_onnx.runtime import CPU, make_session

    s32 = make_session(model32, providers=[CPU], threads=1)
    s16 = make_session(model16, providers=[CPU], threads=1)
    first = s32.get_inputs()[0]
    batch = first.shape[0] if isinstance(first.shape[0], int) else images
    shape = [d.dim_value for d in model32.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)
    x16 = x.astype(np.float16) if s16.get_inputs()[0].type == "tensor(float16)" else x
    ref = [np.asarray(a, dtype=np.float32) for a in s32.run(None, {first.name: x})]
    got = [np.asarray(a, dtype=np.float32) for a in s16.run(None, {s16.get_inputs()[0].name: x16})]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(got, ref))
    scale = max(float(np.abs(b).max()) for b in ref)
    return Parity(diff, scale, RTOL * scale + ATOL, batch)


class _Rewrite:
    """The state of one rewrite: the precision of each float value, and the Casts made so far."""

    def __init__(self, g: onnx.GraphProto, io_fp16: bool) -> None:
        self.g = g
        self.weights = {t.name: t for t in g.initializer if t.data_type == FLOAT}
        self.initializers = [t for t in g.initializer if t.data_type != FLOAT]
        self.made: dict[tuple[str, int], str] = {}  # (value, precision) -> the value of that precision
        self.dtype: dict[str, int] = {}  # float value -> FLOAT or HALF
        self.nodes: list[onnx.NodeProto] = []
        self.pending: list[onnx.NodeProto] = []  # Casts made while rewriting the current node
        for value in g.input:
            if value.type.tensor_type.elem_type == FLOAT:
                if io_fp16:
                    value.type.tensor_type.elem_type = HALF
                self.dtype[value.name] = HALF if io_fp16 else FLOAT

    def node(self, node: onnx.NodeProto, precision: int) -> list[onnx.NodeProto]:
        """The node in `precision`, preceded by the Casts of its inputs it needs."""
        new = onnx.NodeProto()
        new.CopyFrom(node)
        self.pending = []
        floats = False
        for i, value in enumerate(node.input):
            if value in self.weights or value in self.dtype:
                new.input[i] = self.value(value, precision)
                floats = True
        if node.op_type == "Constant":
            floats = self._constant(new, precision)
        if floats and node.op_type not in BOOL_OUTPUT_OPS:
            for value in new.output:
                self.dtype[value] = precision
        return [*self.pending, new]

    def value(self, name: str, precision: int) -> str:
        """`name` as a value of `precision`: the value itself, a converted initializer or a Cast."""
        if (name, precision) in self.made:
            return self.made[name, precision]
        if name in self.weights:
            made = name if not self._uses(name, other=precision) else f"{name}.{_suffix(precision)}"
            self.initializers.append(_convert(self.weights[name], made, precision))
        elif self.dtype[name] == precision:
            made = name
        else:
            made = f"{name}.{_suffix(precision)}"
            self.pending.append(
                helper.make_node("Cast", [name], [made], name=f"{name}/to_{_suffix(precision)}", to=precision)
            )
        self.made[name, precision] = made
        return made

    def _uses(self, name: str, other: int) -> bool:
        """Whether initializer `name` is already used in a precision other than `other`."""
        return any(key == name and p != other for key, p in self.made)

    def _constant(self, node: onnx.NodeProto, precision: int) -> bool:
        for attr in node.attribute:
            if attr.name == "value" and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(_convert(attr.t, attr.t.name, precision))
                return True
        return False

    def outputs(self, io_fp16: bool) -> None:
        """Graph outputs in the I/O precision: the last producer renamed, a Cast to the output's name."""
        want = HALF if io_fp16 else FLOAT
        for out in self.g.output:
            if out.type.tensor_type.elem_type != FLOAT:
                continue
            out.type.tensor_type.elem_type = want
            if self.dtype.get(out.name, want) == want:
                continue
            inner = f"{out.name}.{_suffix(self.dtype[out.name])}"
            for node in self.nodes:
                for field in (node.input, node.output):
                    for i, name in enumerate(field):
                        if name == out.name:
                            field[i] = inner
            self.nodes.append(
                helper.make_node("Cast", [inner], [out.name], name=f"{out.name}/to_{_suffix(want)}", to=want)
            )


def _suffix(precision: int) -> str:
    return "fp16" if precision == HALF else "fp32"


def _convert(tensor: onnx.TensorProto, name: str, precision: int) -> onnx.TensorProto:
    array = numpy_helper.to_array(tensor)
    if precision == HALF:
        big = float(np.abs(array).max()) if array.size else 0.0
        if big > FP16_MAX:
            raise UserError(
                f"--precision fp16: weight '{tensor.name}' holds {big:.4g}, beyond fp16's largest value"
                f" {FP16_MAX:,.0f} — it would become infinity; compile it in fp32"
            )
        array = array.astype(np.float16)
    return numpy_helper.from_array(np.ascontiguousarray(array), name)
