"""Re-target a spec to another task: another number of classes, another input size.

`classes`: the class count in the header and the output count of the classifier (the
conv/linear layer(s) producing the class scores) change together; labels that no longer
fit are dropped, with a note. `input`: the input shape changes and nothing else; shape
inference after the transform then names the first layer the new size breaks (a valid 3x3
conv on a map that became 1x1, a `flatten` whose size no longer matches its `linear`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from specc.errors import Diagnostic, SpecError, UserError
from specc.ir import Graph
from specc.shapes import ShapeReport
from specc.transforms.base import Rewrite, Transform, argument, located
from specc.transforms.rewrite import classifier_layers

_SHAPE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
MAX_SIDE = 1 << 16


def parse_input(text) -> tuple[int, int, int]:
    """`1x28x28` (or a (C, H, W) sequence) -> (1, 28, 28)."""
    if isinstance(text, str):
        match = _SHAPE.match(text)
        if not match:
            raise UserError(f"input {text!r}: expected CxHxW, e.g. 1x28x28 or 3x32x32")
        values = tuple(int(g) for g in match.groups())
    else:
        try:
            values = tuple(int(v) for v in text)
        except (TypeError, ValueError):
            values = ()
        if len(values) != 3:
            raise UserError(f"input {text!r}: expected (channels, height, width), e.g. (1, 28, 28)")
    if not all(0 < v <= MAX_SIDE for v in values):
        raise UserError(f"input {'x'.join(map(str, values))}: every dimension must be between 1 and {MAX_SIDE}")
    c, h, w = values  # three: the pattern has three groups, and a sequence was checked above
    return (c, h, w)


@dataclass(frozen=True)
class SetClasses(Transform):
    """Change the number of classes (and the classifier's outputs with it)."""

    name: ClassVar[str] = "classes"
    help: ClassVar[str] = "set the number of classes and the classifier's outputs (e.g. 100 for CIFAR-100)"
    rationale: ClassVar[str] = (
        "Re-targets a model to another label set: the header's classes and the layer producing "
        "the class scores change together, so the spec stays consistent."
    )
    classes: int = argument(metavar="N")

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.classes, bool) or not isinstance(self.classes, int) or self.classes < 1:
            raise UserError(f"classes {self.classes!r}: expected a positive integer")

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        if graph.classes is None:
            where = graph.header("name")
            raise SpecError(
                Diagnostic(
                    where,
                    "",
                    f"spec '{graph.name}' has no classes, so there is no class count to change"
                    " — add 'classes: N' to the spec (its last layer giving N scores)",
                )
            )
        heads, through_concat = classifier_layers(graph)
        if through_concat or not heads:
            reason = (
                "the class scores are a concat of several layers — which one should change is not clear"
                if through_concat
                else "no conv or linear layer produces the class scores"
            )
            raise SpecError(located(graph.output, f"cannot change the class count: {reason}"))
        nodes = []
        for node in graph.nodes:
            if node in heads:
                # Keep the outputs per class: a head before a maxout of k pieces gives k per class.
                field = node.op.width_field
                assert field is not None, "classifier_layers returns layers with a width"
                node = node.with_params(**{field: self.classes * getattr(node.op, field) // graph.classes})
            nodes.append(node)
        notes = []
        labels = graph.labels
        if labels is not None and len(labels) != self.classes:
            notes.append(
                Diagnostic(
                    graph.header("labels"),
                    "labels",
                    f"dropped the {len(labels)} labels (they named {graph.classes} classes)",
                    "",
                    "warning",
                )
            )
            labels = None
        return Rewrite(graph.replace(classes=self.classes, labels=labels, nodes=tuple(nodes)), tuple(notes))


@dataclass(frozen=True)
class SetInput(Transform):
    """Change the input shape; shape inference then checks every layer against it."""

    name: ClassVar[str] = "input"
    help: ClassVar[str] = "set the input shape (e.g. 1x28x28); refused, naming the layer, where a shape breaks"
    rationale: ClassVar[str] = (
        "Re-targets a model to other images (MNIST's 1x28x28, ImageNet's 3x227x227). Shapes are "
        "inferred again, so a layer the new size no longer fits is named with its file:line:col."
    )
    shape: tuple[int, int, int] = argument(metavar="CxHxW", parse=parse_input)

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "shape", parse_input(self.shape))

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        return Rewrite(graph.replace(input_shape=self.shape))
