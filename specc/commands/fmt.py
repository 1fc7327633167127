"""`specc fmt`: print a spec as canonical YAML."""

from __future__ import annotations

from specc.api import check
from specc.commands.common import add_command, add_spec_options, check_kwargs, spec_source
from specc.emit import schema_modeline, to_yaml
from specc.yamlsrc import read_source


def register(sub) -> None:
    p = add_command(
        sub,
        "fmt",
        "print a spec as canonical YAML (repeats expanded, base: resolved, every layer named)",
        """
specc fmt specs/allcnn_large.yaml
specc fmt specs/allcnn_c100.yaml > allcnn_c100_flat.yaml
""",
    )
    add_spec_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    source = spec_source(args.spec)
    if source == "-":
        # stdin can be read once: load from the text we already have.
        text, _ = read_source("-")
        from specc.spec import load_graph_text

        graph = load_graph_text(text, "<stdin>", args.overrides)
        result = check(graph, **check_kwargs(args))
    else:
        text, _ = read_source(source)
        result = check(source, args.overrides, **check_kwargs(args))
    print(to_yaml(result.graph, schema_modeline(text)), end="")
    return 0
