"""`specc fmt`: print a spec in canonical form, comments kept; or check/rewrite files in place."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from specc.api import check
from specc.commands.common import add_command, add_spec_options, check_kwargs, spec_source, spec_sources
from specc.emit import to_dict
from specc.errors import SpecError, UserError
from specc.fileio import write_files
from specc.formatting import format_with_comments
from specc.spec import load_graph_text
from specc.yamlsrc import load_text, read_source


def register(sub) -> None:
    p = add_command(
        sub,
        "fmt",
        "print a spec in canonical form (repeats expanded, base: resolved, every layer named), comments kept",
        """
specc fmt specs/allcnn_large.yaml
specc fmt specs/allcnn_c100.yaml > allcnn_c100_flat.yaml
specc fmt --check specs/*.yaml          # exit 1 when a file would change
specc fmt --in-place my_net.yaml
""",
    )
    add_spec_options(p, many=True)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="print the files that are not in canonical form and exit 1 if there are any (0 otherwise)",
    )
    mode.add_argument(
        "-i",
        "--in-place",
        action="store_true",
        help="rewrite the files in canonical form (all or none; refused for a file with base: or repeat:)",
    )
    p.add_argument("--json", action="store_true", help="print JSON: the canonical spec, or each file's status")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Formatted:
    """One spec's text before and after formatting."""

    name: str
    before: str
    after: str
    spec: dict
    flattens: str  # "base:" or "repeat:" when the canonical form would expand it, else ""

    @property
    def changed(self) -> bool:
        return self.before != self.after


def format_source(source: str, args) -> Formatted:
    """Read, check and format one spec (a path or `-`)."""
    text, name = read_source(source)
    result = check(load_graph_text(text, name, args.overrides), **check_kwargs(args))
    data = load_text(text, name).data
    flattens = ""
    if isinstance(data, dict) and "base" in data:
        flattens = "base:"
    elif isinstance(data, dict) and isinstance(data.get("layers"), list):
        if any(isinstance(e, dict) and "repeat" in e for e in data["layers"]):
            flattens = "repeat:"
    after = format_with_comments(result.graph, text, name)
    return Formatted(name, text, after, to_dict(result.graph), flattens)


def run(args) -> int:
    sources = spec_sources(args.specs) or [spec_source(None)]
    if args.check or args.in_place:
        return _run_files(sources, args)
    if len(sources) > 1:
        raise UserError("fmt prints one spec — give --check or --in-place to format several files")
    formatted = format_source(sources[0], args)
    if args.json:
        print(json.dumps({"file": formatted.name, "spec": formatted.spec}, indent=2))
    else:
        print(formatted.after, end="")
    return 0


def _run_files(sources: list[str], args) -> int:
    """--check and --in-place over several files: every error reported, then the verdict."""
    if args.in_place and "-" in sources:
        raise UserError("--in-place needs files: stdin cannot be rewritten (drop --in-place to print)")
    done: list[Formatted] = []
    errors: dict[str, list[str]] = {}  # file -> its error lines, as `specc check` prints them
    for source in sources:
        try:
            formatted = format_source(source, args)
        except SpecError as exc:
            errors[source] = [d.format() for d in exc.diagnostics]
            continue
        except UserError as exc:
            errors[source] = [f"error: {exc}"]
            continue
        if args.in_place and formatted.changed and formatted.flattens:
            errors[source] = [
                f"error: {formatted.name}: has {formatted.flattens}, which canonical form expands — --in-place"
                f" refuses to flatten it (print it instead: `specc fmt {formatted.name} > flat.yaml`)"
            ]
            continue
        done.append(formatted)
    for lines in errors.values():
        print("\n".join(lines), file=sys.stderr)
    changed = [f for f in done if f.changed]
    if args.in_place and not errors:
        write_files({Path(f.name): f.after.encode("utf-8") for f in changed})
    if args.json:
        files = [{"file": f.name, "changed": f.changed} for f in done]
        files += [
            {"file": name, "errors": [line.removeprefix("error: ") for line in lines]} for name, lines in errors.items()
        ]
        print(json.dumps({"ok": not errors and (args.in_place or not changed), "files": files}, indent=2))
    elif args.check:
        for f in changed:
            print(f"would reformat: {f.name}")
    _tally(args, len(changed), len(done) - len(changed), len(errors))
    if errors:
        return 2
    return 1 if args.check and changed else 0


def _tally(args, changed: int, unchanged: int, failed: int) -> None:
    """The one-line verdict on stderr, as black and ruff print it."""

    def files(n: int) -> str:
        return f"{n} file{'s' if n != 1 else ''}"

    if args.in_place and failed:
        print(f"nothing written: {files(failed)} with errors", file=sys.stderr)
        return
    if args.in_place:
        verb = f"{files(changed)} reformatted"
    else:
        verb = f"{files(changed)} would be reformatted"
    parts = [verb, f"{files(unchanged)} already formatted"] + ([f"{files(failed)} with errors"] if failed else [])
    print(", ".join(parts), file=sys.stderr)
