"""Located diagnostics: every user-facing problem names the file, line, column and key path.

A `SpecError` carries all diagnostics of a file at once, so a user fixes a spec in one pass
instead of one error per run. `UserError` is the one-line error for everything else a user
can get wrong (paths, arguments, datasets, checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourcePos:
    """A 1-based position in a source file (or a pseudo-file such as `<stdin>` or `--set`)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_POS = SourcePos("<unknown>")


@dataclass(frozen=True)
class Diagnostic:
    """One located problem; `path` is the key path in the spec (`layers[5]`), `label` the layer name."""

    pos: SourcePos
    path: str
    message: str
    label: str = ""
    severity: str = "error"  # "error" | "warning"

    def format(self) -> str:
        where = self.path
        if self.label:
            where = f"{where} ({self.label})" if where else f"({self.label})"
        prefix = "warning: " if self.severity == "warning" else ""
        if where:
            return f"{self.pos}: {prefix}{where}: {self.message}"
        return f"{self.pos}: {prefix}{self.message}"

    def as_dict(self) -> dict:
        return {
            "file": self.pos.file,
            "line": self.pos.line,
            "col": self.pos.col,
            "path": self.path,
            "layer": self.label,
            "severity": self.severity,
            "message": self.message,
        }


class SpecError(Exception):
    """One or more located errors in a spec; `str()` gives one line per diagnostic."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic, partial=None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = distinct(diagnostics)
        # The part of the spec that did validate (a Graph), so later stages can still report.
        self.partial = partial
        super().__init__("\n".join(d.format() for d in self.diagnostics))


def distinct(diagnostics) -> list[Diagnostic]:
    """Each problem once, in order. A layer inside a `repeat` block is validated once per
    iteration, from the same place in the file: its problems differ at most in the layer name
    (`conv1`, `conv2`, ...), so problems at the same position and key path with the same
    message are one problem, reported with the first layer's name."""
    seen: set[tuple] = set()
    out = []
    for d in diagnostics:
        key = (d.pos, d.path, d.message, d.severity)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


class UserError(Exception):
    """A problem the user must fix that is not inside a spec: a path, an argument, a dataset,
    a checkpoint. The message is one line and names the thing at fault."""


@dataclass
class DiagnosticSink:
    """Collects diagnostics so that all problems of a file are reported together."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, pos: SourcePos, path: str, message: str, label: str = "") -> None:
        self.diagnostics.append(Diagnostic(pos, path, message, label))

    def warn(self, pos: SourcePos, path: str, message: str, label: str = "") -> None:
        self.diagnostics.append(Diagnostic(pos, path, message, label, "warning"))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SpecError(self.errors)


def did_you_mean(word: str, choices) -> str:
    """` — did you mean 'x'?` for the closest choice, or an empty string."""
    import difflib

    word, options = str(word), [str(c) for c in choices]
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not match:
        # `convolution` for `conv`, `maxpool` for `max_pool`: a prefix or squashed spelling.
        squashed = word.replace("_", "").replace("-", "").lower()
        match = [
            o
            for o in options
            if squashed.startswith(o.replace("_", "").lower()) or o.replace("_", "").lower().startswith(squashed)
        ][:1]
    return f" — did you mean '{match[0]}'?" if match else ""
