"""Lint warnings: legal specs that hide a known trap. Each is located like an error;
`specc check --strict` turns them into errors."""

from __future__ import annotations

from specc.errors import Diagnostic
from specc.ir import INPUT, Graph, Node
from specc.ops import AvgPool, LayerOp, MaxPool, _window_out, _Windowed
from specc.shapes import ShapeReport


def keeps_scores(op: LayerOp) -> bool:
    """Passes class scores on unchanged in kind, so a ReLU before it still clips them: a
    softmax, a layer turning a map of scores into a vector (global pooling, flatten), a layer
    that does nothing in inference (dropout)."""
    return op.makes_probabilities or op.vectorizes or op.train_only


def _rectifies(op: LayerOp) -> bool:
    """A rectifier, or a layer with a fused rectifier (`conv ... activation: relu`)."""
    fused = op.activation_op()
    return op.rectifier or (fused is not None and fused.rectifier)


def warnings(graph: Graph, report: ShapeReport) -> list[Diagnostic]:
    """All lint warnings of a shape-checked graph, in spec order."""
    found: list[Diagnostic] = []
    found += _relu_on_scores(graph)
    live = _feeding_outputs(graph)
    for node in graph.nodes:
        found += _dropout_before_batch_norm(graph, node)
        found += _border_drop(node, report)
        found += _rounding(node, report)
        found += _unused(graph, node, live)
    return found


def _warn(node: Node, message: str) -> Diagnostic:
    return Diagnostic(node.pos, node.path, message, node.name, "warning")


def _relu_on_scores(graph: Graph) -> list[Diagnostic]:
    if graph.classes is None:
        return []  # a feature map out of a ReLU is no trap
    node = graph.output
    while keeps_scores(node.op) and node.inputs[0] != INPUT:
        node = graph.node(node.inputs[0])
    if not _rectifies(node.op):
        return []
    return [
        _warn(
            node,
            "ReLU on the final class scores: negative scores are clipped to 0 and get no gradient, so"
            " outputs can die (the paper does this; keep it to reproduce the paper, else activation: none)",
        )
    ]


def _dropout_before_batch_norm(graph: Graph, node: Node) -> list[Diagnostic]:
    if not node.op.normalizes:
        return []
    src = node.inputs[0]
    if src != INPUT and graph.node(src).op.train_only:
        return [
            _warn(
                node,
                f"{node.type} right after {graph.node(src).type} '{src}': its running statistics are collected on"
                " dropped-out activations in training but applied to full ones in eval (variance shift)"
                " — put dropout after the normalisation",
            )
        ]
    return []


def _geometry(node: Node, report: ShapeReport):
    src = node.inputs[0]
    in_shape = report.shapes.get(src)
    return in_shape if in_shape is not None and len(in_shape) == 3 else None


def _border_drop(node: Node, report: ShapeReport) -> list[Diagnostic]:
    if not isinstance(node.op, _Windowed):
        return []
    in_shape = _geometry(node, report)
    out_shape = report.shapes.get(node.name)
    if in_shape is None or out_shape is None:
        return []
    lost = []
    for axis, size, k, s, p, o in zip(
        ("rows", "columns"),
        in_shape[1:],
        node.op.window([in_shape])[:2],
        node.op.stride_hw(),
        node.op.pads(),
        out_shape[1:],
    ):
        if k < s:
            continue  # windows skip rows everywhere (a 1x1 stride-2 shortcut): the border is no different
        last_covered = (o - 1) * s - p + k - 1
        dropped = size - 1 - last_covered
        if dropped > 0:
            lost.append(
                f"{dropped} {axis} (windows of {k}, stride {s}, padding {p} stop at index {last_covered} of {size})"
            )
    if not lost:
        return []
    return [
        _warn(
            node,
            f"never sees the last {' and '.join(lost)} — adjust the input size or padding so the stride divides it",
        )
    ]


def _rounding(node: Node, report: ShapeReport) -> list[Diagnostic]:
    # A spec that states `ceil_mode` (true or false, on the layer or in `defaults`) has chosen
    # its rounding: only the silent default is worth a warning.
    if not isinstance(node.op, (MaxPool, AvgPool)) or "ceil_mode" in node.op.model_fields_set:
        return []
    in_shape = _geometry(node, report)
    if in_shape is None:
        return []
    _, h, w = in_shape
    (kh, kw), (sh, sw), (ph, pw) = node.op.kernel_hw(), node.op.stride_hw(), node.op.pads()
    floor_size = "x".join(
        str(_window_out(n, k, st, 2 * p, 1, False)[0]) for n, k, st, p in ((h, kh, sh, ph), (w, kw, sw, pw))
    )
    ceil_size = "x".join(
        str(_window_out(n, k, st, 2 * p, 1, True)[0]) for n, k, st, p in ((h, kh, sh, ph), (w, kw, sw, pw))
    )
    if floor_size == ceil_size:
        return []
    used, other = ("ceil", "floor") if node.op.ceil_mode else ("floor", "ceil")
    sizes = {"floor": floor_size, "ceil": ceil_size}
    return [
        _warn(
            node,
            f"output size depends on the framework's rounding: {used} gives {sizes[used]}, {other} gives"
            f" {sizes[other]} (PyTorch/ONNX/Keras pool with floor, Caffe with ceil) — this spec uses {used};"
            " check the size when porting",
        )
    ]


def _feeding_outputs(graph: Graph) -> set[str]:
    """The output layers and every layer they read, directly or not."""
    live: set[str] = set()
    todo = list(graph.output_names)
    while todo:
        name = todo.pop()
        if name in live or name not in graph.by_name:
            continue
        live.add(name)
        todo.extend(graph.node(name).inputs)
    return live


def _unused(graph: Graph, node: Node, live: set[str]) -> list[Diagnostic]:
    """Layers no output depends on: backends do not even compute them."""
    if node.name in live:
        return []
    what = "listed in outputs:" if graph.outputs else "the network output"
    if graph.consumers(node.name):
        return [_warn(node, f"output is never used (read only by layers that feed nothing, not {what})")]
    return [_warn(node, f"output is never used (not an input of any layer, not {what})")]
