"""The spec a specc-compiled model carries (`specc.spec` in its metadata), used only when it
provably is the model: compiled again with the model's own weights, it gives the model's graph
node for node and every initializer bit for bit. Then import returns it as written — dropout,
names, labels and the train recipe included, which inference ONNX cannot carry. Anything else
(metadata edited, a graph changed after compiling, batch_norm folded) falls back to the
patterns, which read the graph alone."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from specc.errors import SpecError, UserError
from specc.ir import Graph
from specc.spec import load_graph_text
from specc_onnx.metadata import PREFIX


def embedded_spec(model: onnx.ModelProto, consts: dict[str, np.ndarray]) -> tuple[Graph, dict[str, np.ndarray]] | None:
    """(spec, weights) from the model's metadata when they reproduce the model exactly;
    `consts`: the model's initializers as arrays (the view's)."""
    from specc_onnx.emit import emit
    from specc_onnx.weights import weight_shapes

    props = {p.key: p.value for p in model.metadata_props}
    text = props.get(f"{PREFIX}spec")
    if not text or props.get(f"{PREFIX}folded", "[]") != "[]":
        return None
    try:
        graph = load_graph_text(text, "specc.spec (metadata)")
        weights = {k: consts[k] for k in weight_shapes(graph)}
        dims = model.graph.input[0].type.tensor_type.shape.dim
        batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else "dynamic"
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        output = props.get(f"{PREFIX}output", "logits")
        mode = output if output != "features" else "logits"
        again = emit(graph, weights, opset=opset, batch=batch, output=mode, fold_bn=False)
    except (SpecError, UserError, KeyError, StopIteration, ValueError):
        return None
    if not _same_graph(again.graph, model.graph, set(weights), consts):
        return None
    return graph, {k: np.array(v, dtype=np.float32) for k, v in weights.items()}


def _same_graph(ours: onnx.GraphProto, theirs: onnx.GraphProto, taken: set[str], consts: dict) -> bool:
    """Node for node the same; the same initializers, those not `taken` from the model (whose
    copies are the model's own by construction) compared bit for bit."""
    if len(ours.node) != len(theirs.node) or len(ours.initializer) != len(theirs.initializer):
        return False
    if any(a.SerializeToString() != b.SerializeToString() for a, b in zip(ours.node, theirs.node)):
        return False
    if [i.SerializeToString() for i in ours.input] != [i.SerializeToString() for i in theirs.input]:
        return False
    if [o.SerializeToString() for o in ours.output] != [o.SerializeToString() for o in theirs.output]:
        return False
    names = {t.name for t in theirs.initializer}
    return all(
        t.name in names and (t.name in taken or _same_array(numpy_helper.to_array(t), consts.get(t.name)))
        for t in ours.initializer
    )


def _same_array(x: np.ndarray, y: np.ndarray | None) -> bool:
    return y is not None and x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
