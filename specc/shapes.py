"""Shape inference and the numbers of the summary, derived by one pass over the graph.

Nothing is stored on the nodes: `infer(graph)` returns a `ShapeReport` with, per layer, the
output shape, parameter count, MACs, receptive field and jump (effective stride), and the
totals. Every failure is located at the layer at fault and all of them are reported at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from specc.errors import DiagnosticSink, SpecError
from specc.ir import INPUT, Graph
from specc.ops import Shape, ShapeError

BYTES_PER_VALUE = 4  # fp32 activations
DEFAULT_MAX_PARAMS = 2 * 10**9
DEFAULT_MAX_ACTIVATION_BYTES = 16 * 1024**3


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    describe: str
    shape: Shape
    params: int
    macs: int
    rf: tuple[int, int]
    jump: tuple[int, int]


@dataclass(frozen=True)
class ShapeReport:
    graph: Graph
    layers: tuple[LayerInfo, ...]
    shapes: dict[str, Shape] = field(repr=False)

    @property
    def total_params(self) -> int:
        return sum(info.params for info in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(info.macs for info in self.layers)

    @property
    def activation_bytes(self) -> int:
        """Per-image fp32 memory of every layer's output, plus the input."""
        values = math.prod(self.graph.input_shape) + sum(math.prod(i.shape) for i in self.layers)
        return values * BYTES_PER_VALUE

    @property
    def output_shape(self) -> Shape:
        """The shape of the (last) output, the one `classes` applies to."""
        return self.shapes[self.graph.output.name]

    @property
    def output_shapes(self) -> dict[str, Shape]:
        """Each output layer's shape, in the order the network returns them."""
        return {name: self.shapes[name] for name in self.graph.output_names}

    @property
    def output_rf(self) -> tuple[int, int]:
        return self.info(self.graph.output.name).rf

    def info(self, name: str) -> LayerInfo:
        return next(i for i in self.layers if i.name == name)

    def as_dict(self) -> dict:
        return {
            "name": self.graph.name,
            "input": list(self.graph.input_shape),
            "classes": self.graph.classes,
            "outputs": [{"name": name, "output_shape": list(shape)} for name, shape in self.output_shapes.items()],
            "layers": [
                {
                    "name": i.name,
                    "type": i.type,
                    "describe": i.describe,
                    "output_shape": list(i.shape),
                    "params": i.params,
                    "macs": i.macs,
                    "receptive_field": list(i.rf),
                    "jump": list(i.jump),
                    "is_output": i.name in self.graph.output_names,
                }
                for i in self.layers
            ],
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "activation_bytes": self.activation_bytes,
        }


def infer(
    graph: Graph,
    *,
    max_params: int = DEFAULT_MAX_PARAMS,
    max_activation_bytes: int = DEFAULT_MAX_ACTIVATION_BYTES,
    check_classes: bool = True,
) -> ShapeReport:
    """Infer every layer's shape and numbers; raise one `SpecError` with all problems."""
    sink = DiagnosticSink()
    shapes: dict[str, Shape] = {INPUT: graph.input_shape}
    geometry: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {INPUT: ((1, 1), (1, 1))}
    infos: dict[str, LayerInfo] = {}
    for node in graph.topo_order():
        if any(src not in shapes for src in node.inputs):
            continue  # an input already failed; its own error says why
        ins = [shapes[src] for src in node.inputs]
        try:
            out = node.op.output_shape(ins)
        except ShapeError as exc:
            sink.error(node.pos, node.path, str(exc), node.name)
            stand_in = _shape_despite(node.op, ins)
            if stand_in is not None:  # the layers after it are still checked (all errors at once)
                shapes[node.name] = stand_in
                geometry[node.name] = max(geometry[s] for s in node.inputs)
            continue
        shapes[node.name] = out
        kh, kw, sh, sw = node.op.window(ins)
        # Receptive field of the widest input branch; the jump grows by this layer's stride.
        rf_in = max(geometry[s][0] for s in node.inputs)
        # A flat input (a squeeze-and-excitation gate) has no spacing of positions: the jump is
        # the feature maps'.
        maps = [s for s in node.inputs if len(shapes[s]) == 3] or list(node.inputs)
        jump_in = max(geometry[s][1] for s in maps)
        rf = (rf_in[0] + (kh - 1) * jump_in[0], rf_in[1] + (kw - 1) * jump_in[1])
        jump = (jump_in[0] * sh, jump_in[1] * sw)
        geometry[node.name] = (rf, jump)
        infos[node.name] = LayerInfo(
            node.name,
            node.type,
            node.op.describe(),
            out,
            node.op.param_count(ins),
            node.op.macs(ins, out),
            rf,
            jump,
        )
    if sink.errors and check_classes and graph.classes is not None and graph.output.name in shapes:
        # All errors at once: a class-count mismatch that does not depend on the broken layers
        # (the output's shape was computed) is reported with them.
        partial = ShapeReport(graph, tuple(infos.values()), shapes)
        _check_output(graph, partial, sink)
    sink.raise_if_errors()
    report = ShapeReport(graph, tuple(infos[n.name] for n in graph.nodes), shapes)
    if check_classes and graph.classes is not None:
        _check_output(graph, report, sink)
    _check_budget(graph, report, sink, max_params, max_activation_bytes)
    sink.raise_if_errors()
    return report


def _shape_despite(op, ins: list[Shape]) -> Shape | None:
    """The shape a layer refused only for `padding: same` with an even kernel would have (PyTorch
    pads it asymmetrically: ceil(H / stride)), so that errors after it are found too; None for
    any other error, whose layers after it stay unchecked."""
    if getattr(op, "padding", None) != "same":
        return None
    update = {"padding": "valid", "kernel": 1, "stride": op.stride_hw()}
    if "dilation" in type(op).model_fields:
        update["dilation"] = 1
    try:
        return op.model_copy(update=update).output_shape(ins)
    except (ShapeError, AttributeError, TypeError, ValueError):
        return None


def _check_output(graph: Graph, report: ShapeReport, sink: DiagnosticSink) -> None:
    """`classes: N` asks the (last) output to be N class scores."""
    out = graph.output
    shape = report.shapes[out.name]
    if shape == (graph.classes,):
        return
    # With several outputs, say which one `classes` applies to.
    which = f"the last output, '{out.name}'," if len(graph.output_names) > 1 else "the network"
    if len(shape) == 3:
        c, h, w = shape
        hint = "a global_avg_pool (or flatten + linear) to reach the class scores"
        ends = "ends in" if len(graph.output_names) == 1 else "is"
        sink.error(
            out.pos,
            out.path,
            f"{which} {ends} a {c}x{h}x{w} feature map — expected {graph.classes} class scores; add {hint}"
            + ("" if graph.outputs else ", or drop classes: for a network that outputs a feature map"),
            out.name,
        )
    else:
        sink.error(
            out.pos,
            out.path,
            f"{which} outputs {'x'.join(map(str, shape))} values but classes is {graph.classes}"
            f" — the last conv/linear layer must have {graph.classes} outputs",
            out.name,
        )


def _check_budget(graph: Graph, report: ShapeReport, sink: DiagnosticSink, max_params: int, max_bytes: int) -> None:
    pos = graph.header("layers")
    if report.total_params > max_params:
        sink.error(
            pos,
            "layers",
            f"{report.total_params:,} parameters exceed the budget of {max_params:,} (--max-params to change)",
        )
    if report.activation_bytes > max_bytes:
        sink.error(
            pos,
            "layers",
            f"{report.activation_bytes / 2**30:.1f} GiB of activations per image exceed the budget of"
            f" {max_bytes / 2**30:.1f} GiB (--max-activation-gib to change)",
        )


__all__ = ["ShapeReport", "LayerInfo", "infer", "SpecError"]
