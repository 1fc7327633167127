"""The compiler's front end: a spec (a path, `-`, YAML text or a Graph) in, a validated,
shape-checked and linted Graph out. Everything above the core (the API, commands, training,
the ablation runner) and the core's own entry points (`specc.transforms.transform`) come in
through here; backends take the Graph it returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from specc.errors import Diagnostic, SpecError
from specc.ir import Graph
from specc.lint import warnings as lint_warnings
from specc.shapes import DEFAULT_MAX_ACTIVATION_BYTES, DEFAULT_MAX_PARAMS, ShapeReport, infer
from specc.spec import load_graph, load_graph_text

SpecLike = str | Path | Graph


@dataclass(frozen=True)
class CheckResult:
    """A shape-checked spec: the graph, its numbers and its lint warnings."""

    graph: Graph
    report: ShapeReport
    warnings: tuple[Diagnostic, ...]


def load(spec: SpecLike, overrides: list[str] | None = None) -> Graph:
    """A spec path (or `-`), YAML text (a string containing a newline) or a Graph -> Graph."""
    if isinstance(spec, Graph):
        return spec
    if isinstance(spec, str) and "\n" in spec:
        return load_graph_text(spec, "<string>", overrides)
    return load_graph(spec, overrides)


def check(
    spec: SpecLike,
    overrides: list[str] | None = None,
    *,
    strict: bool = False,
    max_params: int = DEFAULT_MAX_PARAMS,
    max_activation_bytes: int = DEFAULT_MAX_ACTIVATION_BYTES,
) -> CheckResult:
    """Validate and shape-check a spec; `strict` turns lint warnings into errors."""
    try:
        graph = load(spec, overrides)
    except SpecError as exc:
        raise SpecError(_with_shape_errors(exc)) from None
    report = infer(graph, max_params=max_params, max_activation_bytes=max_activation_bytes)
    found = tuple(lint_warnings(graph, report))
    if strict and found:
        raise SpecError([Diagnostic(d.pos, d.path, d.message, d.label, "error") for d in found])
    return CheckResult(graph, report, found)


def _with_shape_errors(exc: SpecError) -> list[Diagnostic]:
    """Add the shape errors of the part of a spec that validated, so that one run reports all."""
    found = list(exc.diagnostics)
    if exc.partial is not None:
        try:
            infer(exc.partial, check_classes=False)
        except SpecError as shape_exc:
            found += [d for d in shape_exc.diagnostics if d.path != "layers"]
        except Exception:  # noqa: BLE001 - a broken partial graph (e.g. a cycle) adds nothing
            pass
    return sorted(found, key=lambda d: (d.pos.file, d.pos.line, d.pos.col))
