"""`specc draw`: a diagram of the network (SVG, PNG, PDF or DOT), or of two side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from specc.api import check
from specc.commands.common import add_command, add_spec_options, check_kwargs, spec_source
from specc.errors import UserError


def register(sub) -> None:
    p = add_command(
        sub,
        "draw",
        "draw the network: one box per layer (type, options, output shape), an arrow per edge",
        """
specc draw specs/resnet_tiny.yaml -o resnet_tiny.svg
specc draw specs/allcnn_c.yaml -o allcnn_c.png --params
specc draw specs/zoo/resnet50.yaml -o resnet50.pdf --rankdir LR
specc draw specs/model_c.yaml --diff specs/strided_cnn_c.yaml -o pool-to-stride.svg
specc draw specs/allcnn_c.yaml -o allcnn_c.dot && dot -Tpng allcnn_c.dot -o allcnn_c.png
""",
        description="Draw the network as a layered diagram: one box per layer with its name, type, the options "
        "that are set (required ones and those off their default) and its output shape; an arrow for every "
        "edge, so residual, concat and multi-output graphs read clearly. The format follows the extension of "
        "-o: .svg (default, no extra packages), .png/.pdf (matplotlib) or .dot (for graphviz). The layout is "
        "specc's own (pure Python), so graphviz is not needed.",
    )
    add_spec_options(p)
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="where to write the diagram: .svg, .png, .pdf or .dot (default: NAME.svg; - for SVG on stdout)",
    )
    p.add_argument(
        "--diff",
        metavar="OTHER_SPEC",
        help="draw SPEC and OTHER_SPEC side by side, changed/added/removed layers highlighted (--set applies to SPEC)",
    )
    p.add_argument("--rankdir", choices=("TB", "LR"), default="TB", help="top to bottom (default) or left to right")
    p.add_argument("--params", action="store_true", help="show each layer's parameter count")
    p.add_argument("--json", action="store_true", help="print JSON: the specs drawn, the counts and the file written")
    p.add_argument("--weights", metavar="CKPT", help="a checkpoint of SPEC: show each layer's weight RMS (needs torch)")
    p.set_defaults(func=run)


def run(args) -> int:
    # Refuse a bad output before any work, so a refusal never costs a layout or leaves a file.
    out = args.output
    fmt = "svg" if out in (None, "-") else _output_format(out)
    if args.json and out == "-":
        raise UserError("-o - prints the SVG itself; --json needs a file to write (-o OUT)")
    if args.diff and args.weights:
        raise UserError("--weights and --diff do not go together: a diff shows the specs, not trained weights")
    if args.diff == "-" and args.spec == "-":  # the second read of stdin would find it empty
        raise UserError("--diff -: SPEC already reads stdin — give one of the two as a file")
    from specc.draw import diff_scene, network_scene, render

    result = check(spec_source(args.spec), args.overrides, **check_kwargs(args))
    other = _check_other(args) if args.diff else None
    if other is not None:
        scene = diff_scene(result.report, other.report, args.rankdir, params=args.params)
    else:
        notes = _weight_notes(args.weights, result.graph) if args.weights else None
        scene = network_scene(result.report, args.rankdir, params=args.params, weight_notes=notes)
    data = render(scene, fmt, args.rankdir)
    if out == "-":
        sys.stdout.write(data.decode("utf-8"))
        return 0
    from specc.fileio import write_bytes

    path = Path(out) if out else Path(f"{result.graph.name}.svg")
    size = write_bytes(path, data)
    if args.json:
        specs = [result.graph.name] + ([other.graph.name] if other is not None else [])
        counts = {"boxes": len(scene.boxes), "edges": len(scene.edges)}
        print(json.dumps({"specs": specs, **counts, "wrote": [{"path": str(path), "bytes": size}]}, indent=2))
        return 0
    what = f"{result.graph.name} vs {other.graph.name}" if other is not None else result.graph.name
    print(f"wrote {path} ({what}: {len(scene.boxes)} boxes, {len(scene.edges)} edges)", file=sys.stderr)
    return 0


def _output_format(out: str) -> str:
    from specc.draw import output_format

    return output_format(out, "-o")


def _check_other(args):
    """The --diff spec, shape-checked; a file that cannot be read is named with the flag."""
    try:
        return check(args.diff, **check_kwargs(args))
    except UserError as exc:
        raise UserError(f"--diff {exc}") from None


def _weight_notes(path: str, graph) -> dict[str, str]:
    """`weight rms 0.042` per layer with weights, from a checkpoint checked against the spec."""
    from specc_torch.weights import load_weights

    state = load_weights(path, graph)  # refuses another architecture in one line
    notes = {}
    for node in graph.nodes:
        weight = state.get(f"{node.name}.weight")
        if weight is not None and weight.is_floating_point() and weight.numel():
            notes[node.name] = f"weight rms {float(weight.float().pow(2).mean().sqrt()):.3g}"
    return notes
