"""`specc transform`: rewrite a spec (the paper's pool-to-stride rules and friends) and print
the new spec as canonical YAML, or write it (and a remapped checkpoint) to files.

The transform flags come from the table in `specc.transforms.registry` and are applied in
the order given on the command line; `--list` prints the table with each rationale.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from specc.commands.common import add_command, add_spec_options, check_kwargs, refuse_stdout, spec_source
from specc.emit import schema_modeline, to_dict
from specc.errors import UserError
from specc.fileio import write_bytes, write_text
from specc.spec import load_graph_text
from specc.transforms import OPTIONS, TRANSFORMS, build_steps, run
from specc.transforms.files import check_writable
from specc.yamlsrc import read_source


class _AppendStep(argparse.Action):
    """Append (transform name, value) to `args.steps`, keeping command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        steps = list(getattr(namespace, "steps", None) or [])
        steps.append((self.transform_name, True if values == [] else values))
        namespace.steps = steps

    def __init__(self, *args, transform_name: str, **kwargs):
        self.transform_name = transform_name
        super().__init__(*args, **kwargs)


def _typed(parse):
    """An argparse `type=` from a table parser: its UserError becomes a usage error."""

    def convert(text: str):
        try:
            return parse(text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def register(sub) -> None:
    p = add_command(
        sub,
        "transform",
        "rewrite a spec: replace pooling by strided convs (ALL-CNN) and back, re-width, re-target",
        """
specc transform specs/model_c.yaml --replace-pooling conv          # ALL-CNN-C
specc transform specs/model_c.yaml --replace-pooling conv --diff
specc transform --replace-pooling conv < specs/model_c.yaml | specc summary -
specc transform specs/allcnn_c.yaml --replace-stride maxpool --weights run/best.pt --weights-out pooled.pt -o pooled.yaml
specc transform specs/allcnn_c.yaml --input 1x28x28 --width-mult 0.5 --round 8
specc transform --list
""",
        description="Rewrite a spec with the transforms below, applied in the order given, re-check its shapes "
        "and print it as canonical YAML (or write it with -o). Each transform is checked: a layer a rule "
        "cannot rewrite is named with its file:line:col (exit 2).",
    )
    add_spec_options(p)
    steps = p.add_argument_group("transforms (applied in the order given; flags may repeat)")
    for entry in TRANSFORMS.values():
        kwargs: dict[str, Any] = (
            {"nargs": 0} if entry.parse is None else {"metavar": entry.metavar, "type": _typed(entry.parse)}
        )
        if entry.choices:
            kwargs["choices"] = entry.choices
            kwargs["metavar"] = "{" + ",".join(entry.choices) + "}"
        steps.add_argument(entry.flag, action=_AppendStep, transform_name=entry.name, help=entry.help, **kwargs)
    options = p.add_argument_group("transform options")
    for option in OPTIONS.values():
        if option.parse is None:
            options.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
        else:
            options.add_argument(
                option.flag,
                dest=option.name,
                type=_typed(option.parse),
                default=option.default,
                metavar=option.metavar,
                help=option.help,
            )
    out = p.add_argument_group("output")
    out.add_argument(
        "-o", "--output", metavar="OUT.yaml", help="write the new spec here (atomically) instead of stdout"
    )
    out.add_argument("--force", action="store_true", help="overwrite existing output files")
    out.add_argument("--diff", action="store_true", help="print the layers added/removed/changed and the totals")
    out.add_argument(
        "--draw",
        metavar="OUT.svg",
        help="draw the spec before and after side by side, changes highlighted (.svg, .png, .pdf or .dot)",
    )
    out.add_argument("--weights", metavar="CKPT", help="a checkpoint of the input spec to carry over")
    out.add_argument("--weights-out", metavar="OUT", help="where to write the remapped checkpoint")
    out.add_argument("--list", action="store_true", help="list the transforms with their rationale and exit")
    out.add_argument(
        "--json", action="store_true", help="print JSON: the new spec, its layer diff and totals (or the --list table)"
    )
    p.set_defaults(func=run_command, steps=[])


def run_command(args) -> int:
    refuse_stdout("--weights-out", args.weights_out, "a checkpoint")
    if args.output == "-":  # stdout, as without -o
        args.output = None
    if args.list:
        print(json.dumps(table_dict(), indent=2) if args.json else describe_table(), end="\n" if args.json else "")
        return 0
    if not args.steps:
        flags = ", ".join(e.flag for e in TRANSFORMS.values())
        raise UserError(f"no transform given — use one of {flags} (see --list)")
    if bool(args.weights) != bool(args.weights_out):
        raise UserError("--weights and --weights-out go together: the checkpoint to read and where to write it")
    # Refuse before doing any work, so a refusal never leaves one output written.
    if args.output:
        check_writable(args.output, args.force, "-o")
    if args.draw:
        from specc.draw import output_format

        output_format(args.draw, "--draw")
    if args.weights_out:
        check_writable(args.weights_out, args.force, "--weights-out")
        if args.output and args.output == args.weights_out:
            raise UserError("-o and --weights-out name the same file")

    text, name = read_source(spec_source(args.spec))
    graph = load_graph_text(text, name, args.overrides)
    options = {name: getattr(args, name) for name in OPTIONS}
    result = run(graph, build_steps(args.steps, options), **check_kwargs(args))
    for note in result.notes:
        print(note.format(), file=sys.stderr)
    drawing = _drawing(args.draw, result) if args.draw else b""  # rendered before any file is written

    labels = ", ".join(step.label() for step in result.steps)
    if args.weights:
        from specc.transforms.weights import remap_checkpoint

        dropped = remap_checkpoint(args.weights, args.weights_out, result.source_report, result.report, labels)
        note = f"; dropped the training state {', '.join(dropped)} (it belongs to the old network)" if dropped else ""
        print(f"wrote {args.weights_out} (weights of {args.weights}, remapped through {labels}{note})", file=sys.stderr)
    spec_text = result.to_yaml(schema_modeline(text))
    if args.output:
        write_text(args.output, spec_text)
        print(
            f"wrote {args.output} ({result.graph.name} after {labels}: {result.report.total_params:,} parameters)",
            file=sys.stderr,
        )
    if drawing:
        write_bytes(args.draw, drawing)
        print(f"wrote {args.draw} ({result.graph.name} before and after {labels})", file=sys.stderr)
    if args.json:
        wrote = [p for p in (args.output, args.draw, args.weights_out) if p]
        print(json.dumps(result_dict(result, wrote), indent=2))
    elif args.diff:
        from specc.transforms.diff import render

        print(render(result), end="")
    elif not args.output:
        print(spec_text, end="")
    return 0


def _drawing(path: str, result) -> bytes:
    """`--draw`: the spec before and after, side by side, as `specc draw --diff` draws them."""
    from specc.draw import diff_scene, output_format, render

    return render(diff_scene(result.source_report, result.report), output_format(path, "--draw"))


def result_dict(result, wrote: list[str]) -> dict:
    """`--json`: the transformed spec as data, the steps, the layer diff, the totals."""
    from specc.transforms.diff import layer_rows

    before, after = result.source_report, result.report
    keys = ("change", "layer", "type", "details", "output", "params")
    diff: list[dict] = [dict(zip(keys, row)) for row in layer_rows(before, after)]
    for row in diff:
        row["params"] = int(row["params"].replace(",", ""))  # the table's "83,040" as a number
    return {
        "name": result.graph.name,
        "steps": [step.label() for step in result.steps],
        "notes": [note.as_dict() for note in result.notes],
        "diff": diff,
        "totals": {
            "params": [before.total_params, after.total_params],
            "macs": [before.total_macs, after.total_macs],
            "output_rf": [list(before.output_rf), list(after.output_rf)],
        },
        "spec": to_dict(result.graph),
        "wrote": wrote,
    }


def table_dict() -> dict:
    """`--list --json`: the transforms and the shared options."""
    transforms = [
        {"name": e.name, "flag": e.flag, "choices": list(e.choices or ()), "help": e.help, "why": e.rationale}
        for e in TRANSFORMS.values()
    ]
    options = [{"name": o.name, "flag": o.flag, "help": o.help} for o in OPTIONS.values()]
    return {"transforms": transforms, "options": options}


def describe_table() -> str:
    """`--list`: every transform and shared option with its help and rationale."""
    lines = ["transforms (applied in the order given):", ""]
    for e in TRANSFORMS.values():
        value = "{" + ",".join(e.choices) + "}" if e.choices else (e.metavar or "")
        lines.append(f"  {e.flag} {value}".rstrip() + f"  (API: {e.name}=...)")
        lines.append(f"      {e.help}")
        lines += textwrap.wrap(e.rationale, 92, initial_indent="      why: ", subsequent_indent="           ")
        if e.options:
            lines.append("      options: " + ", ".join(OPTIONS[o].flag for o in e.options))
        lines.append("")
    lines.append("options:")
    for o in OPTIONS.values():
        lines.append(f"  {o.flag} {o.metavar or ''}".rstrip() + f"  (API: {o.name}=...)")
        lines.append(f"      {o.help}")
    return "\n".join(lines) + "\n"
