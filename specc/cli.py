"""The `specc` command. Each subcommand lives in `specc/commands/<name>.py` and registers
itself; backends are imported lazily inside the commands that need them.

Exit status: 0 success, 2 anything the user must fix (spec, arguments, paths), 1 internal
failure. Results go to stdout, diagnostics to stderr, so commands chain in pipes.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys

from specc.errors import SpecError, UserError
from specc.version import __version__

# Subcommand modules, in the order `specc --help` lists them.
COMMANDS = (
    "check",
    "summary",
    "draw",
    "fmt",
    "schema",
    "transform",
    "compile",
    "import",
    "predict",
    "train",
    "eval",
    "quantize",
    "bench",
    "visualize",
    "ablate",
)

# Commands about specc itself rather than a network, listed last.
TOOLING = ("completion",)

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (which command, which argument, why), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        choice = re.match(r"argument (\S+): invalid choice: '(.*?)' \(choose from ", message)
        if choice:
            what, word = choice.groups()
            # the choices from the action itself: argparse quotes them differently across versions
            names = set(what.split("/"))  # "-o/--output" for an option with two flags
            action = next((a for a in self._actions if names & {*a.option_strings, a.metavar, a.dest}), None)
            hint = did_you_mean(word, [str(c) for c in (action.choices or ())] if action else [])
            if what == "COMMAND":
                self.exit(EXIT_USER, f"error: {self.prog}: unknown command '{word}'{hint or ' (see `specc --help`)'}\n")
            if hint:
                self.exit(EXIT_USER, f"error: {self.prog}: argument {what}: invalid choice: '{word}'{hint}\n")
        self.exit(EXIT_USER, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def did_you_mean(word: str, names: list[str]) -> str:
    """The suffix naming the closest of `names` (difflib's ratio >= 0.6): " — did you mean 'x'?", or ""."""
    close = difflib.get_close_matches(word, names, n=1)
    return f" — did you mean '{close[0]}'?" if close else ""


def _unrecognized(parser: argparse.ArgumentParser, command: str | None, extras: list[str]) -> str:
    """The usage error for arguments no option took, naming the closest option of the command."""
    sub = _subparser(parser, command) or parser
    options = [o[2:] for action in sub._actions for o in action.option_strings if o.startswith("--")]
    first = extras[0]
    # compared without the dashes, which every option shares and which would inflate the ratio
    close = difflib.get_close_matches(first.split("=", 1)[0][2:], options, n=1) if first.startswith("--") else []
    if close:
        return f"error: {sub.prog}: unrecognized option '{first}' — did you mean '--{close[0]}'?\n"
    return f"error: {parser.prog}: unrecognized arguments: {' '.join(extras)} (see `{parser.prog} --help`)\n"


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="specc",
        description="specc — describe a CNN once in YAML; check, transform, compile, train and explain it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `specc COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"specc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS + TOOLING:
        try:
            module = importlib.import_module(f"specc.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"specc.commands.{name}":
                continue  # a command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # also while the parser and the commands are being imported
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.exit(EXIT_USER, _unrecognized(parser, getattr(args, "command", None), extras))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USER
    try:
        return int(args.func(args) or EXIT_OK)
    except SpecError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic.format(), file=sys.stderr)
        return EXIT_USER
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the one place internal failures are reported
        if args.debug:
            raise
        print(
            f"specc: internal error: {type(exc).__name__}: {exc} (run `specc --debug ...` for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def run() -> None:
    """Console-script entry point."""
    try:
        code = main()
    except KeyboardInterrupt:  # between main's own handlers (e.g. while printing)
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    run()
