"""Emit an ONNX model straight from the IR and numpy weights (no torch, no tracing).

    model = emit(graph, weights, opset=17, batch="dynamic", output="logits")
    save(model, "build/allcnn_c.onnx")

Naming: the graph input is `input` (N, C, H, W) float32; every layer's output value, ONNX
node and initializer is named after the spec layer (`conv3`, `conv3/relu`,
`conv3.weight`); the graph output of a classifier is `logits` or `probs` (N, classes). A
network without classes or with several `outputs:` has one graph output per output layer,
named after the layer, (N, *its shape), in order. Train-only layers (dropout) and layers
that feed no output emit nothing; batch_norm is folded into the conv/linear before it when
possible.

Deterministic: nodes follow the IR's topological order (spec order where it can), attributes
and metadata are sorted, nothing records a time or a path, so the same graph and weights
always serialise to the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper

from specc.errors import UserError
from specc.fileio import write_bytes
from specc.ir import INPUT, Graph
from specc.lowering import lower, step_shapes
from specc.outputs import output_mode_problem
from specc.shapes import infer
from specc.version import __version__
from specc_onnx.builder import Builder, Layer
from specc_onnx.fold import fold_batch_norm
from specc_onnx.metadata import build_metadata
from specc_onnx.ops import OP_TABLE

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis and the current Flatten/Gemm/BatchNormalization forms
INPUT_NAME = "input"
BATCH_PARAM = "batch"
OUTPUTS = ("logits", "probs")


def emit(
    graph: Graph,
    weights: dict[str, np.ndarray],
    *,
    opset: int = DEFAULT_OPSET,
    batch: str | int = "dynamic",
    output: str = "logits",
    fold_bn: bool = True,
    metadata: dict | None = None,
) -> onnx.ModelProto:
    """The ONNX model of `graph` with `weights` (PyTorch state_dict names, numpy arrays).

    `batch` is "dynamic" (a symbolic batch axis) or a fixed positive size; `output` "logits"
    drops a final softmax layer and "probs" ends the model with one (a classifier's choice:
    other networks output their layers as computed and refuse "probs"). `metadata` adds
    entries such as {"preprocessing": {...}, "weights": "..."} to the model's metadata (see
    `specc_onnx.metadata`)."""
    _check_options(opset, batch, output)
    problem = output_mode_problem(graph, output)
    if problem:
        raise UserError(f"--output {output}: {problem}")
    spec_graph = graph
    folded: tuple = ()
    if fold_bn:
        result = fold_batch_norm(graph, weights)
        graph, weights, folded = result.graph, result.weights, result.folded
    shapes = infer(graph).shapes
    builder = Builder(weights, opset)
    values = {INPUT: INPUT_NAME}
    final = graph.output
    # Layers that feed no output are not emitted (PyTorch's forward does not run them either).
    live = set(graph.output_names).union(*(nx.ancestors(graph.nx, name) for name in graph.output_names))
    nodes = [n for n in graph.topo_order() if n.name in live]
    drop_softmax = graph.is_classifier and final.op.makes_probabilities and output == "logits"
    if drop_softmax:
        nodes.remove(final)  # the caller wants the scores before it
    steps = lower(nodes)
    shapes = step_shapes(steps, shapes)
    for step in steps:
        layer = Layer(
            step, tuple(values[i] for i in step.inputs), tuple(shapes[i] for i in step.inputs), shapes[step.name]
        )
        params = step.op.params()
        params.pop("type")
        values[step.name] = OP_TABLE[step.kind](builder, layer, step.name, **params)
    if drop_softmax:
        values[final.name] = values[final.inputs[0]]
        shapes[final.name] = shapes[final.inputs[0]]
    if graph.is_classifier:
        outputs = [(_classifier_output(builder, graph, values, output), (spec_graph.classes,))]
    else:
        # Folding keeps the outputs in order; a folded batch_norm's output is its conv's value.
        outputs = [
            (_layer_output(builder, values[name], spec_name), shapes[name])
            for spec_name, name in zip(spec_graph.output_names, graph.output_names)
        ]

    batch_dim = BATCH_PARAM if batch == "dynamic" else int(batch)
    onnx_graph = helper.make_graph(
        builder.nodes,
        spec_graph.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch_dim, *spec_graph.input_shape])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch_dim, *shape]) for name, shape in outputs],
        initializer=builder.initializers,
        doc_string=spec_graph.description,
    )
    model = make_model(onnx_graph, opset, f"specc {spec_graph.name}: {spec_graph.description}".strip())
    props = build_metadata(
        spec_graph,
        output=_scores_kind(spec_graph, output),
        folded=folded,
        extra=metadata or {},
        outputs=[name for name, _ in outputs],
    )
    helper.set_model_props(model, props)
    return model


def _scores_kind(graph: Graph, output: str) -> str:
    """What the class scores output holds (`specc.output`): the classifier's choice; the last
    output of a network with several as computed; "features" without classes."""
    if graph.is_classifier:
        return output
    if graph.classes is None:
        return "features"
    return "probs" if graph.output.op.makes_probabilities else "logits"


def _classifier_output(builder: Builder, graph: Graph, values: dict[str, str], output: str) -> str:
    """The one output of a classifier, renamed after its role: `logits` or `probs`."""
    final = graph.output
    result = values[final.name]
    out_name = output if output not in graph.by_name else graph.fresh_name(output)
    if output == "probs" and not final.op.makes_probabilities:
        result = builder.add("Softmax", [result], f"{final.name}/softmax", graph.fresh_name("softmax"), axis=1)
    assert result != INPUT_NAME, "the classes check guarantees at least one computing layer"
    _rename_value(builder.nodes, result, out_name)
    return out_name


def _layer_output(builder: Builder, value: str, name: str) -> str:
    """The graph output of output layer `name`, whose value is `value`, named after the layer.
    A layer whose value is another's (dropout passes its input on; a folded batch_norm's is
    its conv's) gets an Identity, so that every output has its own name."""
    if value != name:
        builder.add("Identity", [value], name, name)
    return name


def _check_options(opset: int, batch, output: str) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise UserError(f"--opset {opset}: expected an integer from {MIN_OPSET} to {newest}")
    if batch != "dynamic" and not (isinstance(batch, int) and not isinstance(batch, bool) and batch > 0):
        raise UserError(f"--batch {batch}: expected 'dynamic' or a positive integer")
    if output not in OUTPUTS:
        raise UserError(f"--output {output}: expected logits or probs")


def _rename_value(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    """Rename a value everywhere it is written or read (the network output gets its role's name)."""
    for node in nodes:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old:
                    field[i] = new


def layer_values(graph: Graph, model: onnx.ModelProto) -> dict[str, str]:
    """Spec layer -> the ONNX value holding its output, for the layers that emit a node
    (dropout and folded batch_norm do not). A classifier's output layer maps to the graph
    output (`logits`/`probs`); other networks' outputs are named after their layers."""
    produced = {out for node in model.graph.node for out in node.output}
    mapping = {n.name: n.name for n in graph.nodes if n.name in produced}
    if graph.is_classifier:
        mapping[graph.output.name] = model.graph.output[0].name
    return mapping


def to_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def save(model: onnx.ModelProto, path: str | Path) -> int:
    """Write the model atomically (a temporary file renamed into place); returns its size."""
    return write_atomic(path, to_bytes(model))


def write_atomic(path: str | Path, data: bytes) -> int:
    """Write bytes to `path` atomically (`specc.fileio.write_bytes`); returns the size."""
    return write_bytes(path, data)


def make_model(onnx_graph, opset: int, doc_string: str):
    """A ModelProto around a graph, stamped as specc's, with the lowest IR version the opset allows."""
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(
        onnx_graph,
        opset_imports=opsets,
        producer_name="specc",
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
        doc_string=doc_string,
    )
