"""`specc check`: validate and shape-check one or many specs."""

from __future__ import annotations

import sys

from specc.api import check
from specc.commands.common import add_command, add_spec_options, check_kwargs
from specc.errors import SpecError, UserError
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
    p.set_defaults(func=run)


def run(args) -> int:
    specs = args.specs or ["-"]
    failed = 0
    for spec in specs:
        try:
            result = check(spec, args.overrides, strict=args.strict, **check_kwargs(args))
        except SpecError as exc:
            failed += 1
            for d in exc.diagnostics:
                print(d.format(), file=sys.stderr)
            continue
        except UserError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        for d in result.warnings:
            print(d.format(), file=sys.stderr)
        if not args.quiet:
            r = result.report
            name = "<stdin>" if spec == "-" else spec
            print(
                f"{name}: ok — {result.graph.name}, {r.total_params:,} parameters,"
                f" {len(result.graph.nodes)} layers, {describe_outputs(r)}"
                + (f", {len(result.warnings)} warning(s)" if result.warnings else "")
            )
    return 2 if failed else 0
