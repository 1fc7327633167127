"""`specc schema`: the JSON Schema of the spec format."""

from __future__ import annotations

import json

from specc.commands.common import add_command


def register(sub) -> None:
    p = add_command(
        sub,
        "schema",
        "print the JSON Schema of the spec format (for editor completion and live checking)",
        """
specc schema > docs/spec.schema.json
# then, first line of a spec:  # yaml-language-server: $schema=../docs/spec.schema.json
""",
        description="Print the JSON Schema of the spec format (for editor completion and live checking). "
        "It describes every spec, so it reads none: no SPEC argument and no --set. The output is JSON already.",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from specc.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
