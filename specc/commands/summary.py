"""`specc summary`: the per-layer table (or JSON)."""

from __future__ import annotations

import json

from specc.api import check
from specc.commands.common import add_command, add_spec_options, check_kwargs, spec_source
from specc.summary import render, summary_dict


def register(sub) -> None:
    p = add_command(
        sub,
        "summary",
        "print a per-layer table: output shape, parameters, MACs, receptive field, jump",
        """
specc summary specs/allcnn_c.yaml
specc summary specs/allcnn_c.yaml --json
specc transform specs/model_c.yaml --replace-pooling conv | specc summary -
""",
    )
    add_spec_options(p)
    p.add_argument("--json", action="store_true", help="print the same data as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    result = check(spec_source(args.spec), args.overrides, **check_kwargs(args))
    if args.json:
        print(json.dumps(summary_dict(result.report), indent=2))
    else:
        print(render(result.report), end="")
    return 0
