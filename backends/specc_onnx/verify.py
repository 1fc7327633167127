"""The outside oracle: onnx's checker and strict shape inference must agree with specc.

`verify(model, graph)` runs `onnx.checker.check_model(full_check=True)`, then
`onnx.shape_inference.infer_shapes(strict_mode=True)`, and compares the shape onnx infers
for every layer's output value with the one `specc.shapes.infer` gave (batch axis first).
"""

from __future__ import annotations

import onnx
from onnx import helper

from specc.ir import Graph
from specc.shapes import infer
from specc_onnx.emit import layer_values


class VerifyError(AssertionError):
    """The emitted model disagrees with onnx or with specc's shapes: a bug in the emitter."""


def onnx_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """value name -> shape per strict shape inference; a symbolic dim is its name."""
    inferred = onnx.shape_inference.infer_shapes(_skeleton(model), check_type=True, strict_mode=True, data_prop=True)
    out = {}
    g = inferred.graph
    for info in list(g.value_info) + list(g.output) + list(g.input):
        dims = info.type.tensor_type.shape.dim
        out[info.name] = tuple(d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims)
    return out


def verify(model: onnx.ModelProto, graph: Graph, serialized: bytes | None = None) -> dict[str, tuple]:
    """Check `model` (emitted from `graph`); returns layer -> onnx shape, raises VerifyError.
    Pass the model's bytes when you have them: serialising a large model twice costs seconds."""
    try:
        onnx.checker.check_model(serialized or model.SerializeToString(), full_check=True)
        shapes = onnx_shapes(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VerifyError(f"{graph.name}: onnx rejects the emitted model: {exc}") from exc
    expected = infer(graph).shapes
    batch = shapes[model.graph.input[0].name][0]
    checked, wrong = {}, []
    for layer, value in layer_values(graph, model).items():
        got = shapes.get(value)
        want = (batch, *expected[layer])
        if got != want:
            wrong.append(f"{layer} (value {value}): onnx infers {got}, specc {want}")
        checked[layer] = got
    if wrong:
        raise VerifyError(f"{graph.name}: shapes differ — " + "; ".join(wrong))
    return checked


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its initializers turned into typed graph inputs: the same shapes for
    inference (which reads only their types and dims), without copying the weight bytes."""
    g = model.graph
    weights = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer]
    graph = helper.make_graph(list(g.node), g.name, [*g.input, *weights], list(g.output))
    return helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
