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
    """Validate and shape-check a spec; `strict` turns lint warnings into errors. An error that
    only the `--set` overrides cause names the override(s) at fault."""
    budgets = {"max_params": max_params, "max_activation_bytes": max_activation_bytes}
    try:
        graph, report = _load_and_infer(spec, overrides, budgets)
    except SpecError as exc:
        if not overrides or isinstance(spec, Graph):
            raise
        raise SpecError(_blame_overrides(spec, overrides, exc.diagnostics, budgets)) from None
    found = tuple(lint_warnings(graph, report))
    if strict and found:
        raise SpecError([Diagnostic(d.pos, d.path, d.message, d.label, "error") for d in found])
    return CheckResult(graph, report, found)


def _load_and_infer(spec: SpecLike, overrides: list[str] | None, budgets: dict) -> tuple[Graph, ShapeReport]:
    try:
        graph = load(spec, overrides)
    except SpecError as exc:
        raise SpecError(_with_shape_errors(exc)) from None
    return graph, infer(graph, **budgets)


def _errors_with(spec: SpecLike, overrides: list[str], budgets: dict) -> set[tuple[str, str]] | None:
    """The (path, message) of each error the spec has with `overrides`; None if the spec itself
    cannot be read (then nothing can be blamed on an override)."""
    try:
        _load_and_infer(spec, overrides, budgets)
    except SpecError as exc:
        return {(d.path, d.message) for d in exc.diagnostics}
    except Exception:  # noqa: BLE001 - a file that cannot be read again: no blame
        return None
    return set()


def _clears(spec: SpecLike, overrides: list[str], key: tuple[str, str], budgets: dict) -> bool:
    """Whether the spec with `overrides` no longer has the error `key`."""
    errors = _errors_with(spec, overrides, budgets)
    return errors is not None and key not in errors


def _blame_overrides(
    spec: SpecLike, overrides: list[str], diagnostics: list[Diagnostic], budgets: dict
) -> list[Diagnostic]:
    """Name the `--set` overrides that cause an error the spec does not have without them: the
    single override whose removal clears it, else all of them. Errors in an override's own value
    already name it (their position is the `--set`)."""
    without = _errors_with(spec, [], budgets)
    if without is None:
        return diagnostics
    blamed = []
    for d in diagnostics:
        key = (d.path, d.message)
        if key in without or d.pos.file.startswith("--set"):
            blamed.append(d)
            continue
        culprits = [
            o for i, o in enumerate(overrides) if _clears(spec, overrides[:i] + overrides[i + 1 :], key, budgets)
        ]
        named = ", ".join(f"--set {o}" for o in (culprits or overrides))
        blamed.append(Diagnostic(d.pos, d.path, f"{d.message} (caused by {named})", d.label, d.severity))
    return blamed


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
