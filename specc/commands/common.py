"""Options shared by the subcommands: how a spec is named and overridden."""

from __future__ import annotations

import argparse
import math
import sys

from specc.errors import UserError
from specc.shapes import DEFAULT_MAX_ACTIVATION_BYTES, DEFAULT_MAX_PARAMS


def add_command(sub, name: str, help: str, examples: str, description: str = "") -> argparse.ArgumentParser:
    """A subparser whose --help ends with examples."""
    return sub.add_parser(
        name,
        help=help,
        description=description or help,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_spec_options(parser: argparse.ArgumentParser, *, many: bool = False, optional: bool = True) -> None:
    """SPEC (path or `-` for stdin; read from stdin when omitted and piped), --set, budgets."""
    if many:
        parser.add_argument("specs", nargs="*", metavar="SPEC", help="spec files, or - for stdin")
    elif optional:
        parser.add_argument(
            "spec", nargs="?", metavar="SPEC", help="a spec file, or - for stdin (the default when piped)"
        )
    else:
        parser.add_argument("spec", metavar="SPEC", help="a spec file, or - for stdin")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value (YAML), e.g. --set classes=100 --set layers.conv9.filters=100",
    )
    parser.add_argument(
        "--max-params",
        type=positive_int,
        default=DEFAULT_MAX_PARAMS,
        help=f"refuse specs above this many parameters (default {DEFAULT_MAX_PARAMS:.0e})",
    )
    parser.add_argument(
        "--max-activation-gib",
        type=positive_number,
        default=DEFAULT_MAX_ACTIVATION_BYTES / 2**30,
        help="refuse specs whose per-image activations exceed this many GiB (default 16)",
    )


def add_weights_map_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--weights-map MAP.yaml: the names of a foreign state_dict given to --weights."""
    parser.add_argument(
        "--weights-map",
        metavar="MAP.yaml",
        help="rename the keys of a --weights state_dict from another model's naming (specc import writes this map)",
    )


def check_weights_map(args) -> None:
    """--weights-map needs --weights."""
    if getattr(args, "weights_map", None) and not getattr(args, "weights", None):
        raise UserError("--weights-map: only with --weights (it renames that state_dict's keys)")


def positive_int(text: str) -> int:
    """An argparse type: a positive integer (1e9 and 1_000 spellings accepted)."""
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(value)


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (nan, inf, 0 and negatives refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def spec_source(value: str | None) -> str:
    """The spec argument, defaulting to stdin when it is piped."""
    if value:
        return value
    if sys.stdin is not None and not sys.stdin.isatty():
        return "-"
    raise UserError("no spec given: name a spec file, or pipe one in (`... | specc COMMAND -`)")


def refuse_stdout(flag: str, value: str | None, writes: str, name: str = "a file") -> None:
    """`-` means stdin/stdout to specc: for an option that names files to write, it would
    otherwise create a file (or folder) literally called `-`."""
    if value == "-":
        raise UserError(f"{flag} -: {writes} cannot go to stdout — name {name}")


def spec_sources(values: list[str]) -> list[str]:
    """SPEC arguments of a command that takes several: stdin (`-`) at most once, since a second
    read of it finds it empty (which would pass for an empty spec)."""
    if values.count("-") > 1:
        raise UserError("SPEC -: stdin given more than once — it can be read only once")
    return values


def check_kwargs(args) -> dict:
    return {"max_params": args.max_params, "max_activation_bytes": int(args.max_activation_gib * 2**30)}
