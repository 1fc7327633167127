"""What the import tests share: a graph in the form the emitter can carry, and small ONNX
models written by hand."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from specc.ir import Graph
from specc.opbase import _Windowed
from specc.shapes import infer

TRAINING_ONLY = ("init", "init_std", "momentum", "init_slope", "init_value")  # not in ONNX: nothing to import them from


def comparable(graph: Graph) -> tuple:
    """A graph as the emitter can carry it: the layers inference ONNX drops removed (their
    readers read their input: train-only layers, `identity`, an adaptive pool to the size it
    is given), training-only fields dropped, a `slope` that no leaky_relu reads dropped,
    padding as per-side numbers."""
    alias = {}
    layers = []
    shapes = infer(graph).shapes
    for node in graph.nodes:
        inputs = tuple(alias.get(i, i) for i in node.inputs)
        if (
            node.op.train_only
            or node.type == "identity"
            or (node.type.startswith("adaptive_") and shapes[node.name] == shapes[node.inputs[0]])
        ):
            alias[node.name] = inputs[0]
            continue
        params = {k: v for k, v in node.op.params().items() if k not in TRAINING_ONLY}
        if params.get("activation") != "leaky_relu":
            params.pop("slope", None)
        if isinstance(node.op, _Windowed):
            params["padding"], params["stride"] = node.op.pads(), node.op.stride_hw()
        layers.append((node.name, inputs, params))
    outputs = tuple(alias.get(o, o) for o in graph.outputs)
    return graph.name, graph.description, graph.input_shape, graph.classes, outputs, tuple(layers), graph.labels


def save_onnx(tmp_path: Path, nodes, inputs, outputs, initializers=(), name="model.onnx", opset=17) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def image_input(name="x", shape=(1, 3, 4, 4)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
