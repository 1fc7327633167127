"""A read-only view of an ONNX model for the importer: nodes in order, who produces and who
reads each value, constant values, and the shape of every value after strict shape inference.

The model is checked first (`onnx.checker`, then shape inference in strict mode, falling back
to the lenient mode only where strict inference cannot run), so that the patterns work on a
valid graph and every refusal is about specc, not about a broken file.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from specc.errors import UserError
from specc_onnx.metadata import PREFIX

MIN_OPSET = 11
LABELS_KEY = f"{PREFIX}labels"
# Nodes that only compute shapes and indices; exporters leave chains of them before a Reshape
# (`x.view(x.size(0), -1)` becomes Shape -> Gather -> Unsqueeze -> Concat -> Reshape).
SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Constant", "Mul", "Div", "Size"}


@dataclass(frozen=True)
class OnnxNode:
    """One ONNX node as plain data: its attributes decoded, its position in the graph."""

    index: int
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict = field(hash=False, compare=False)
    scope: str = ""  # the PyTorch module the dynamo exporter says the node comes from

    @property
    def output(self) -> str:
        return self.outputs[0]

    def label(self) -> str:
        """How a message names the node: its name, or its position when it has none."""
        return self.name or f"#{self.index} ({self.op_type})"


@dataclass
class ModelView:
    """The graph as the patterns read it."""

    name: str
    description: str
    input_name: str
    input_shape: tuple[int, int, int]
    outputs: tuple[str, ...]
    output_shapes: tuple[tuple, ...]
    nodes: list[OnnxNode]
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple]  # value -> dims (int, or str for a symbolic/unknown dim)
    producer: dict[str, OnnxNode] = field(default_factory=dict)
    readers: dict[str, list[OnnxNode]] = field(default_factory=dict)
    shape_only: set[str] = field(default_factory=set)  # values that depend on no data
    labels: tuple[str, ...] | None = None  # class names a specc-emitted model records

    def consumers(self, value: str) -> list[OnnxNode]:
        return self.readers.get(value, [])

    def const(self, value: str) -> np.ndarray | None:
        return self.consts.get(value)

    def shape(self, value: str) -> tuple:
        """The value's dims; empty when shape inference does not know them."""
        return self.shapes.get(value, ())

    def is_output(self, value: str) -> bool:
        return value in self.outputs


def load_model(source: str | Path | bytes | onnx.ModelProto, label: str = "") -> tuple[onnx.ModelProto, str]:
    """The model and how messages name it, from a path, serialised bytes or a ModelProto."""
    if isinstance(source, onnx.ModelProto):
        return source, label or "<model>"
    if isinstance(source, bytes):
        label = label or "<model>"
        try:
            return onnx.load_from_string(source), label
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types for bad bytes
            raise UserError(f"{label}: not an ONNX model ({type(exc).__name__})") from None
    path = Path(source)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    if path.stat().st_size == 0:  # protobuf reads no bytes as an empty model, which would pass for "opset 0"
        raise UserError(f"{path}: an empty file, not an ONNX model")
    try:
        return onnx.load(str(path)), str(path)
    except onnx.checker.ValidationError as exc:  # external data missing, absolute or outside the folder
        raise UserError(f"{path}: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: not an ONNX model ({type(exc).__name__})") from None


def checked_view(model: onnx.ModelProto, label: str) -> ModelView:
    """Check the model, infer its shapes and build the view; one-line refusals. The weights
    are then held twice (the proto and the view's arrays) until the caller drops the proto:
    protobuf's arena frees a message's memory only with the whole message."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise UserError(f"{label}: opset {opset} — specc imports opset {MIN_OPSET} or newer (re-export it)")
    light = _folded(_without_weights(model), label)  # the checks read shapes, not weight values: no copy of them
    try:
        onnx.checker.check_model(light)
    except Exception as exc:  # noqa: BLE001 - ValidationError and friends
        raise UserError(f"{label}: the ONNX checker refuses it: {_first_line(exc)}") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(light, check_type=True, strict_mode=True, data_prop=True)
    except Exception:  # noqa: BLE001 - strict inference fails on some valid models: use the lenient mode
        try:
            inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{label}: ONNX shape inference fails: {_first_line(exc)}") from None
    return _view(inferred, label, model.graph.initializer)


# Initializers up to this size stay in the copy that is checked: Reshape targets, axes, pads
# and scalars, which shape inference reads as values.
_SMALL_INITIALIZER = 1024


def _without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every large initializer turned into a graph input of its type and shape:
    what the checker and shape inference need of it, without serialising ~100 MB of weights."""
    light = onnx.ModelProto()
    light.CopyFrom(onnx.ModelProto(
        ir_version=model.ir_version, opset_import=model.opset_import, producer_name=model.producer_name,
        metadata_props=model.metadata_props,
    ))  # fmt: skip
    graph = light.graph
    graph.name, graph.doc_string = model.graph.name, model.graph.doc_string
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    listed = {i.name for i in model.graph.input}
    for tensor in model.graph.initializer:
        if _size(tensor) <= _SMALL_INITIALIZER or tensor.data_location == onnx.TensorProto.EXTERNAL:
            graph.initializer.append(tensor)
        elif tensor.name not in listed:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return light


def _folded(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """The model with every foldable node computed from Constant nodes alone replaced by a
    Constant of its value (F.pad's pads, as TorchScript writes them): shape inference then
    knows the shapes after it. Nodes reading initializers are kept (a weight laid out is part
    of a layer's pattern)."""
    values: dict[str, np.ndarray] = {}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            values[node.output[0]] = _initializer(node.attribute[0].t, label)
        elif node.op_type in FOLDABLE and node.input and all(not v or v in values for v in node.input):
            folded = _fold(node, values)
            if len(folded) == len([o for o in node.output if o]):
                values.update(folded)
                nodes.extend(
                    helper.make_node("Constant", [], [out], name=f"{node.name}/folded" if i else node.name,
                                     value=numpy_helper.from_array(np.ascontiguousarray(folded[out]), out))
                    for i, out in enumerate(o for o in node.output if o)
                )  # fmt: skip
                continue
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _size(tensor: onnx.TensorProto) -> int:
    count = 1
    for d in tensor.dims:
        count *= int(d)
    return count


def _initializer(tensor: onnx.TensorProto, label: str) -> np.ndarray:
    """An initializer's values; a refusal naming it when its data does not fill the shape it
    declares (a truncated or hostile file) or holds NaN (weights no training produces)."""
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as exc:  # noqa: BLE001 - numpy's reshape and onnx's own checks raise several types
        dims = "x".join(str(d) for d in tensor.dims) or "scalar"
        raise UserError(
            f"{label}: initializer '{tensor.name or '(a Constant)'}' ({dims}): {_first_line(exc)}"
        ) from None
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise UserError(
            f"{label}: initializer '{tensor.name or '(a Constant)'}' holds NaN — the weights are broken, re-export them"
        )
    return array


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def short_float(value: float) -> float:
    """A float32 attribute as the shortest decimal that reads back as it (1e-05, not
    9.999999747378752e-06): what a spec would have said."""
    return float(str(np.float32(value)))


def _short(value):
    if isinstance(value, float):
        return short_float(value)
    if isinstance(value, list) and value and isinstance(value[0], float):
        return [short_float(v) for v in value]
    return value


def decode_attribute(attr: onnx.AttributeProto):
    """An attribute's value as plain Python, float32 numbers at their shortest."""
    return _short(helper.get_attribute_value(attr))


# Ops on stored constants that the view evaluates (with onnx's reference implementation):
# what exporters leave to compute pads, axes and reshaped weights. Small tensors only.
FOLDABLE = {
    "ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Unsqueeze", "Squeeze", "Gather",
    "Add", "Sub", "Mul", "Div", "Neg", "Range", "Expand", "Identity",
}  # fmt: skip
_FOLD_LIMIT = 1 << 16  # values: a weight reshaped (a PReLU slope) is folded, nothing heavy


def _fold(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of a node whose inputs are all constants; {} where it cannot be evaluated."""
    from onnx.reference import ReferenceEvaluator

    inputs = {v: consts[v] for v in node.input if v}
    if sum(a.size for a in inputs.values()) > _FOLD_LIMIT:
        return {}
    try:
        outputs = ReferenceEvaluator(node).run(None, inputs)
    except Exception:  # noqa: BLE001 - left unfolded: a pattern then says what it needed
        return {}
    return {name: np.asarray(value) for name, value in zip(node.output, outputs) if name}


def _dims(value_info) -> tuple:
    if not value_info.type.HasField("tensor_type") or not value_info.type.tensor_type.HasField("shape"):
        return ()
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value_info.type.tensor_type.shape.dim
    )


def _view(model: onnx.ModelProto, label: str, initializers) -> ModelView:
    graph = model.graph
    consts = {t.name: _initializer(t, label) for t in initializers}  # read-only views of one copy
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise UserError(f"{label}: {len(inputs)} graph inputs ({names}) — specc networks take one image input")
    shape = _dims(inputs[0])
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        text = "x".join(str(d) for d in shape) or "unknown"
        raise UserError(
            f"{label}: input '{inputs[0].name}' has shape {text} — specc imports one NxCxHxW image input"
            " with fixed C, H and W"
        )
    shapes = {vi.name: _dims(vi) for vi in (*graph.input, *graph.value_info, *graph.output)}
    nodes = []
    for i, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx"):
            raise UserError(
                f"{label}: node {node.name or i} ({node.domain}::{node.op_type}): a custom-domain op — not supported"
            )
        attrs = {a.name: decode_attribute(a) for a in node.attribute}
        scope = _module_scope({p.key: p.value for p in node.metadata_props})
        nodes.append(OnnxNode(i, node.name, node.op_type, tuple(node.input), tuple(node.output), attrs, scope))
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            consts[node.output[0]] = _initializer(node.attribute[0].t, label)
        elif node.op_type == "Identity" and node.input[0] in consts:  # exporters alias shared weights
            consts[node.output[0]] = consts[node.input[0]]
        elif node.op_type in FOLDABLE and node.input and all(not v or v in consts for v in node.input):
            consts.update(_fold(node, consts))  # exporters' index arithmetic (F.pad's pads), a slope laid out
    view = ModelView(
        name=graph.name,
        description=graph.doc_string,
        input_name=inputs[0].name,
        input_shape=(int(shape[1]), int(shape[2]), int(shape[3])),
        outputs=tuple(o.name for o in graph.output),
        output_shapes=tuple(_dims(o) for o in graph.output),
        nodes=nodes,
        consts=consts,
        shapes=shapes,
    )
    for node in nodes:
        for out in node.outputs:
            view.producer[out] = node
        for value in node.inputs:
            if value:
                view.readers.setdefault(value, []).append(node)
    view.shape_only = _shape_only_values(view)
    view.labels = _labels({p.key: p.value for p in model.metadata_props})
    return view


def _module_scope(props: dict[str, str]) -> str:
    """The module path (`layer1.0.relu`) from the dynamo exporter's `name_scopes` metadata;
    for an op called in a module's own forward, that module (`layer1.0`)."""
    text = props.get("pkg.torch.onnx.name_scopes")
    if not text:
        return ""
    try:
        scopes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return ""
    if not isinstance(scopes, list) or len(scopes) < 2 or not all(isinstance(s, str) for s in scopes):
        return ""
    return scopes[-2] or scopes[-1]  # top level: the op's own name (`flatten`, `add`)


def _labels(props: dict[str, str]) -> tuple[str, ...] | None:
    """`specc.labels` of the metadata (`specc_onnx.metadata`), when it is a list of names."""
    try:
        labels = json.loads(props.get(LABELS_KEY, "null"))
    except ValueError:
        return None
    if isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels):
        return tuple(labels)
    return None


def _shape_only_values(view: ModelView) -> set[str]:
    """Values computed from constants and tensor shapes alone (never from pixel data)."""
    static = set(view.consts)
    for node in view.nodes:
        if node.op_type == "Shape" or (
            node.op_type in SHAPE_OPS and all(v in static for v in node.inputs if v) and node.inputs
        ):
            static.update(node.outputs)
        elif node.op_type == "Constant":
            static.update(node.outputs)
    return static
