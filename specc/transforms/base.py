"""What every transform shares: the base class, its result, and how it says why a rule did
not apply.

A transform is a frozen dataclass whose fields are its options. `apply(graph, report)` takes
a shape-checked graph (and its `ShapeReport`, for channel counts and sizes) and returns a
`Rewrite`: a new graph, never the input mutated, plus notes for the user. A rule that cannot
apply to a layer says why, located at that layer; the transform either refuses (all such
layers reported together, as one `SpecError`) or, with `skip_unsupported`, leaves them in
place and reports them as warnings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from specc.errors import Diagnostic, SpecError
from specc.ir import Graph, Node
from specc.shapes import ShapeReport

SKIP_HINT = "--skip-unsupported leaves it in place"


@dataclass(frozen=True)
class Rewrite:
    """A transform's output: the new graph and what the user should hear about."""

    graph: Graph
    notes: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True)
class Transform:
    """Base of every transform. Subclasses are frozen dataclasses and set `name`."""

    name: ClassVar[str] = ""

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        raise NotImplementedError

    def value(self) -> object:
        """The main option, as the user wrote it (`conv` of `replace_pooling=conv`)."""
        fields = dataclasses.fields(self)
        return getattr(self, fields[0].name) if fields else True

    def label(self) -> str:
        """`replace_pooling=conv`: how errors and diffs name this step."""
        value = self.value()
        if value is True:
            return self.name
        if isinstance(value, tuple):
            value = "x".join(map(str, value))
        return f"{self.name}={value}"


def located(node: Node, message: str, severity: str = "error") -> Diagnostic:
    """A diagnostic at a layer (its spec position, key path and name)."""
    return Diagnostic(node.pos, node.path, message, node.name, severity)


def finish(graph: Graph, refusals: list[Diagnostic], skip_unsupported: bool, notes=()) -> Rewrite:
    """Refuse with every located reason at once, or (skipping) turn them into warnings."""
    if refusals and not skip_unsupported:
        raise SpecError([dataclasses.replace(d, message=f"{d.message} ({SKIP_HINT})") for d in refusals])
    warnings = [dataclasses.replace(d, severity="warning", message=f"left in place: {d.message}") for d in refusals]
    return Rewrite(graph, tuple(notes) + tuple(warnings))


def nothing_to_do(graph: Graph, message: str) -> Rewrite:
    """A transform that found nothing to rewrite returns the graph unchanged, with a note."""
    pos = graph.header("layers")
    return Rewrite(graph, (Diagnostic(pos, "layers", message, "", "warning"),))
