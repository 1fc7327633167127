"""The Keras/torchinfo-style table of `specc summary`."""

from __future__ import annotations

import json

from specc.ir import INPUT, Graph
from specc.opbase import LayerOp
from specc.outputs import describe_outputs
from specc.shapes import ShapeReport

OUTPUT_MARK = "<- output"


def _dims(values) -> str:
    return "x".join(str(v) for v in values)


def _square(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GiB"


def options(op: LayerOp) -> dict:
    """The op's parameters that differ from its model's defaults and that its short
    description does not already show (`groups`, `dilation`, `count_include_pad`, ...).
    Read from the pydantic model of the op table, so a new op needs nothing here."""
    params = op.params()
    out = {}
    for name, info in type(op).model_fields.items():
        if name == "type" or info.is_required():
            continue
        default = info.default
        if params[name] == _json(default):
            continue
        try:
            shown = type(op).model_validate({**params, name: default}).describe() != op.describe()
        except ValueError:  # the default is not valid with the other values: say it
            shown = False
        if not shown:
            out[name] = params[name]
    return out


def _json(value):
    """A default as params() would write it (tuples as lists)."""
    return json.loads(json.dumps(value)) if isinstance(value, (tuple, list, dict)) else value


def _option_text(values: dict) -> str:
    return " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items())


def is_chain(graph: Graph) -> bool:
    """Whether every layer takes exactly the previous one (the input for the first)."""
    previous = INPUT
    for node in graph.nodes:
        if node.inputs != (previous,):
            return False
        previous = node.name
    return True


def render(report: ShapeReport) -> str:
    """One row per layer (the network's outputs marked), then the totals. A graph that is
    not a chain gets a "connected to" column, as Keras' summary has."""
    graph = report.graph
    chain = is_chain(graph)
    nodes = {node.name: node for node in graph.nodes}
    header = ("layer", "type", "details", "output", "params", "MACs", "RF", "jump", "")
    if not chain:
        header = header[:-1] + ("connected to", "")
    rows: list[tuple[str, ...]] = [("input", "", "", _dims(graph.input_shape), "", "", "1", "1")]
    rows[0] += ("",) * (len(header) - 8)
    for info in report.layers:
        node = nodes[info.name]
        details = " ".join(t for t in (info.describe, _option_text(options(node.op))) if t)
        row: tuple[str, ...] = (
            info.name,
            info.type,
            details,
            _dims(info.shape),
            f"{info.params:,}",
            f"{info.macs:,}",
            _square(info.rf),
            _square(info.jump),
        )
        row += () if chain else (", ".join(node.inputs),)
        rows.append(row + (OUTPUT_MARK if info.name in graph.output_names else "",))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    right = {4, 5, 6, 7}

    def line(row) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    rule = "-" * max(len(line(r)) for r in [header, *rows])
    c, h, w = graph.input_shape
    returns = f"{graph.classes} classes" if graph.is_classifier and not graph.outputs else describe_outputs(report)
    out = [f"{graph.name}: input {c}x{h}x{w}, {returns}", rule, line(header), rule]
    out += [line(r) for r in rows]
    out += [
        rule,
        f"parameters:                 {report.total_params:,}",
        f"MACs per image:             {report.total_macs:,} ({report.total_macs / 1e9:.3f} G)",
        f"activation memory / image:  {human_bytes(report.activation_bytes)} (fp32, every layer's output)",
        f"receptive field of output:  {_square(report.output_rf)}"
        + (f" ({graph.output.name}, the last output)" if len(graph.output_names) > 1 else ""),
    ]
    return "\n".join(out) + "\n"


def summary_dict(report: ShapeReport) -> dict:
    """`specc summary --json`: the shape report, each layer with its inputs and options."""
    data = report.as_dict()
    nodes = {node.name: node for node in report.graph.nodes}
    for layer in data["layers"]:
        node = nodes[layer["name"]]
        layer["inputs"] = list(node.inputs)
        layer["options"] = options(node.op)
    data["chain"] = is_chain(report.graph)
    return data
