"""The pass manager: run transforms in order, checking the graph after every one.

"Valid IR in, valid IR out": the input is linted and shape-checked first (its errors are the
user's spec errors, reported as they are); after each transform the graph is linted and its
shapes inferred again. A failure there (a refusal, a shape the transform broke, a structural
problem) is reported naming the transform and the ones that ran before it, at the layer at
fault: `model.yaml:9:5: layers[7] (conv5): transform input=1x8x8 (after
replace_pooling=conv): 3x3 valid conv on a 2x2 input ...`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from specc.emit import to_yaml
from specc.errors import Diagnostic, SpecError, UserError
from specc.frontend import load
from specc.ir import Graph, lint
from specc.shapes import DEFAULT_MAX_ACTIVATION_BYTES, DEFAULT_MAX_PARAMS, ShapeReport, infer
from specc.transforms.base import Transform
from specc.transforms.registry import OPTIONS, TRANSFORMS, make, options_with_defaults


@dataclass(frozen=True)
class TransformResult:
    """The transformed graph and its shapes, the source it came from, and the notes
    (layers left in place, labels dropped, nothing to do) the user should see."""

    graph: Graph
    report: ShapeReport
    source: Graph
    source_report: ShapeReport
    steps: tuple[Transform, ...]
    notes: tuple[Diagnostic, ...]

    def to_yaml(self, modeline: str | None = None) -> str:
        return to_yaml(self.graph, modeline)


def run(
    graph: Graph,
    steps: Iterable[Transform],
    *,
    max_params: int = DEFAULT_MAX_PARAMS,
    max_activation_bytes: int = DEFAULT_MAX_ACTIVATION_BYTES,
) -> TransformResult:
    """Apply `steps` in order to a graph, checking the result of each."""
    budgets: dict[str, Any] = {"max_params": max_params, "max_activation_bytes": max_activation_bytes}
    problems = lint(graph)
    if problems:
        raise SpecError(problems)
    source_report = report = infer(graph, **budgets)
    steps = tuple(steps)
    notes: list[Diagnostic] = []
    current = graph
    for i, step in enumerate(steps):
        done = steps[:i]
        try:
            rewrite = step.apply(current, report)
            problems = lint(rewrite.graph)
            if problems:
                raise SpecError([_invalid(d) for d in problems])
            report = infer(rewrite.graph, **budgets)
        except SpecError as exc:
            raise SpecError([_named(d, step, done) for d in exc.diagnostics]) from None
        notes.extend(_named(d, step, done) for d in rewrite.notes)
        current = rewrite.graph
    return TransformResult(current, report, graph, source_report, steps, tuple(notes))


def _invalid(d: Diagnostic) -> Diagnostic:
    return dataclasses.replace(d, message=f"produced an invalid graph (a bug in the transform): {d.message}")


def _named(d: Diagnostic, step: Transform, done: tuple[Transform, ...]) -> Diagnostic:
    after = f" (after {', '.join(t.label() for t in done)})" if done else ""
    return dataclasses.replace(d, message=f"transform {step.label()}{after}: {d.message}")


def build_steps(pairs: Iterable[tuple[str, Any]], options: dict | None = None) -> list[Transform]:
    """(table name, value) pairs -> transforms; a value of False or None skips the step."""
    opts = options_with_defaults(options)
    return [make(name, value, opts) for name, value in pairs if value is not None and value is not False]


def transform(
    spec,
    steps: Iterable[tuple[str, Any] | Transform] = (),
    *,
    overrides: list[str] | None = None,
    max_params: int = DEFAULT_MAX_PARAMS,
    max_activation_bytes: int = DEFAULT_MAX_ACTIVATION_BYTES,
    **named: Any,
) -> TransformResult:
    """Rewrite a spec (a path, YAML text or a Graph) with transforms from the table.

    Transforms are given as keywords, applied in the order written —
    `transform("specs/model_c.yaml", replace_pooling="conv", classes=100)` — or as a list of
    (name, value) pairs or `Transform` objects in `steps` (run first), which may repeat a
    transform. Shared options are keywords too: `pool_types="max,avg"`,
    `skip_unsupported=True`, `round_to=8`. Returns a `TransformResult`; `.graph` is the new
    graph, `.to_yaml()` its canonical spec.
    """
    options = {k: named.pop(k) for k in list(named) if k in OPTIONS}
    for key in named:
        if key not in TRANSFORMS:
            make(key, None)  # raises the "unknown transform ... did you mean" error
    opts = options_with_defaults(options)
    built: list[Transform] = []
    for step in steps:
        if isinstance(step, Transform):
            built.append(step)
        elif isinstance(step, tuple) and len(step) == 2:
            built.extend(build_steps([step], opts))
        else:
            raise UserError(f"transform step {step!r}: expected a (name, value) pair or a Transform")
    built.extend(build_steps(named.items(), opts))
    if not built:
        raise UserError(f"no transform given — expected one of {', '.join(TRANSFORMS)}")
    graph = load(spec, overrides)
    return run(graph, built, max_params=max_params, max_activation_bytes=max_activation_bytes)
