"""The Keras/torchinfo-style table of `specc summary`."""

from __future__ import annotations

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


def render(report: ShapeReport) -> str:
    """One row per layer (the network's outputs marked), then the totals."""
    graph = report.graph
    header = ("layer", "type", "details", "output", "params", "MACs", "RF", "jump", "")
    rows = [("input", "", "", _dims(graph.input_shape), "", "", "1", "1", "")]
    for info in report.layers:
        rows.append(
            (
                info.name,
                info.type,
                info.describe,
                _dims(info.shape),
                f"{info.params:,}",
                f"{info.macs:,}",
                _square(info.rf),
                _square(info.jump),
                OUTPUT_MARK if info.name in graph.output_names else "",
            )
        )
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
