"""`specc check`: validate and shape-check one or many specs."""

from __future__ import annotations

import dataclasses
import json
import sys

from specc.api import check
from specc.commands.common import add_command, add_spec_options, check_kwargs, spec_sources
from specc.errors import Diagnostic, SourcePos, SpecError, UserError
from specc.outputs import describe_outputs


def register(sub) -> None:
    p = add_command(
        sub,
        "check",
        "validate and shape-check specs (exit 0 when all pass, 2 otherwise)",
        """
specc check specs/allcnn_c.yaml
specc check specs/*.yaml --strict
specc transform specs/model_c.yaml --replace-pooling conv | specc check -
""",
    )
    add_spec_options(p, many=True)
    p.add_argument("--strict", action="store_true", help="treat lint warnings as errors")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default); json: one document with every spec's result and diagnostics as objects"
        " (file, line, col, path, layer, severity, message), on stdout; github: workflow annotations",
    )
    p.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")
    p.set_defaults(func=run)


FORMATS = ("text", "json", "github")


def run(args) -> int:
    specs = spec_sources(args.specs) or ["-"]
    results = [_check_one(spec, args) for spec in specs]
    if args.format == "json":
        print(json.dumps({"ok": all(r["ok"] for r in results), "specs": results}, indent=2))
    return 0 if all(r["ok"] for r in results) else 2


def _check_one(spec: str, args) -> dict:
    """Check one spec, print its lines in the chosen format; its result as plain data."""
    name = "<stdin>" if spec == "-" else spec
    try:
        result = check(spec, args.overrides, strict=args.strict, **check_kwargs(args))
    except SpecError as exc:
        _emit(args.format, exc.diagnostics)
        return {"spec": name, "ok": False, "diagnostics": [d.as_dict() for d in exc.diagnostics]}
    except UserError as exc:
        if args.format == "text":
            print(f"error: {exc}", file=sys.stderr)
        elif args.format == "github":
            print(f"::error::{_escape(str(exc))}")
        return {"spec": name, "ok": False, "diagnostics": [{"severity": "error", "message": str(exc)}]}
    warnings = attribute(name, result.graph, result.warnings)
    _emit(args.format, warnings)
    r = result.report
    if args.format == "text" and not args.quiet:
        print(
            f"{name}: ok — {result.graph.name}, {r.total_params:,} parameters,"
            f" {len(result.graph.nodes)} layers, {describe_outputs(r)}"
            + (f", {len(result.warnings)} warning(s)" if result.warnings else "")
        )
    return {
        "spec": name,
        "ok": True,
        "name": result.graph.name,
        "params": r.total_params,
        "layers": len(result.graph.nodes),
        "output": describe_outputs(r),
        "diagnostics": [d.as_dict() for d in warnings],
    }


def attribute(name: str, graph, diagnostics) -> list[Diagnostic]:
    """Each diagnostic under the spec it is about: one located in a `base:` file (a layer the
    derived spec inherits) is moved to where the derived spec touches that layer, else to its
    `base:` line, and says where the base wrote it — so that checking a base and a derived
    spec together never prints the same line twice."""
    out = []
    for d in diagnostics:
        if d.pos.file == name or d.pos.file.startswith(("--set", "<")):
            out.append(d)
            continue
        here = _derived_position(name, graph, d.label)
        out.append(dataclasses.replace(d, pos=here, message=f"{d.message} (inherited from {d.pos})"))
    return out


def _derived_position(name: str, graph, label: str) -> SourcePos:
    """Where spec `name` patches layer `label` (`layers: {label: ...}`, or the first parameter
    it sets there), else its `base:` key, else its first line (stdin cannot be read again)."""
    located = None
    if name != "<stdin>":
        from specc.yamlsrc import load

        located = load(name)
        patch = located.key_positions.get(("layers", label))
        if patch:
            return patch
    node = next((n for n in graph.nodes if n.name == label), None)
    written = sorted((p.line, p.col) for _, p in (node.field_pos if node else ()) if p.file == name)
    if written:
        return SourcePos(name, *written[0])
    base = located.key_positions.get(("base",)) if located else None
    return base or SourcePos(name, 1, 1)


def _emit(fmt: str, diagnostics) -> None:
    for d in diagnostics:
        if fmt == "text":
            print(d.format(), file=sys.stderr)
        elif fmt == "github":
            kind = "warning" if d.severity == "warning" else "error"
            place = f"file={d.pos.file},line={d.pos.line},col={d.pos.col}" if d.pos.line > 0 else f"file={d.pos.file}"
            where = f"{d.path} ({d.label})" if d.path and d.label else d.path or (f"({d.label})" if d.label else "")
            text = f"{where}: {d.message}" if where else d.message
            print(f"::{kind} {place}::{_escape(text)}")


def _escape(text: str) -> str:
    """GitHub's workflow-command escaping of a message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
