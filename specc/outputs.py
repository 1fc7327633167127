"""What a network returns, in words, and the refusals of the commands that need a classifier.

A spec with `classes: N` and one output is a classifier: its output is N class scores, which
training, evaluation, `predict` and the backends' `logits`/`probs` choice work with. Without
`classes:` (a backbone, a segmentation head) or with several `outputs:`, the network returns
its output layers' values as they are computed, and those commands refuse it in one line.
"""

from __future__ import annotations

from specc.errors import UserError
from specc.ir import Graph
from specc.shapes import ShapeReport

LOGITS, PROBS = "logits", "probs"


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _spec(graph: Graph) -> str:
    return f"spec '{graph.name}'" + (f" ({graph.source})" if graph.source else "")


def describe_outputs(report: ShapeReport) -> str:
    """`output 10 classes`, `output conv9 256x8x8` or `outputs stage3 128x16x16, logits 10 (10 classes)`."""
    graph = report.graph
    if graph.is_classifier and not graph.outputs:
        return f"output {graph.classes} classes"
    shapes = report.output_shapes
    listed = ", ".join(f"{name} {_dims(shape)}" for name, shape in shapes.items())
    text = f"output{'s' if len(shapes) > 1 else ''} {listed}"
    return text + (f" ({graph.classes} classes)" if graph.classes is not None else "")


def require_classifier(graph: Graph, what: str) -> int:
    """The number of classes of a single-output classifier. Refuses, in one line naming the
    spec and what to change, a network `what` (a command or option: "specc train", "--class")
    cannot use: one without classes or with several outputs."""
    if graph.classes is None:
        raise UserError(
            f"{what} needs class scores, but {_spec(graph)} has no classes — add 'classes: N' to the spec"
            " (its last layer must then give N scores)"
        )
    if len(graph.output_names) > 1:
        names = ", ".join(graph.output_names)
        raise UserError(
            f"{what} needs a single classifier output, but {_spec(graph)} lists {len(graph.output_names)} outputs"
            f" ({names}) — remove 'outputs:' from the spec (the last layer is then the output)"
        )
    return graph.classes


def output_mode_problem(graph: Graph, output: str) -> str | None:
    """Why a backend cannot build `graph` with `output` ("logits" or "probs"), or None.

    `logits` (the default) drops a trailing softmax and `probs` keeps or adds one — for a
    classifier only. Any other network returns its output layers' values as computed (a
    softmax named in `outputs:` stays), so it takes the default and refuses `probs`."""
    if output not in (LOGITS, PROBS):
        return f"output={output!r} — expected {LOGITS} or {PROBS}"
    if output == PROBS and not graph.is_classifier:
        why = "has no classes" if graph.classes is None else f"has {len(graph.output_names)} outputs"
        return (
            f"output '{PROBS}' turns a classifier's scores into probabilities, but {_spec(graph)} {why}"
            " — its outputs are returned as computed (end one in a softmax layer for probabilities)"
        )
    return None
