"""Linear class scores: take the rectifier off the layer that produces the class scores.

The paper keeps a ReLU on its last 1x1 convolution (the class scores), and `specc check`
warns about it: a class whose score is negative for every input is clipped to 0, gets no
gradient and never recovers, so a run can end with classes it never predicts. This rewrite
removes that rectifier — a fused `activation: relu` (and any other rectifying activation)
becomes `activation: none`, a standalone rectifier layer between the scores and the output
is dropped. Nothing else changes: the weights keep their names and shapes, and the
initialisation is the same (He's rule for a plain ReLU has no slope to lose), so a seed
draws the same initial network with and without the rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from specc.ir import INPUT, Graph, Node
from specc.lint import keeps_scores
from specc.shapes import ShapeReport
from specc.transforms.base import Rewrite, Transform, nothing_to_do
from specc.transforms.rewrite import NodeList


@dataclass(frozen=True)
class LinearScores(Transform):
    """Remove the rectifier on the class scores (fused or standalone)."""

    name: ClassVar[str] = "linear_scores"
    help: ClassVar[str] = "take the ReLU (any rectifier) off the layer producing the class scores"
    rationale: ClassVar[str] = (
        "A ReLU on the class scores can kill a class for good (its score clipped to 0 for every "
        "input gets no gradient); `specc check` warns about it. Same weights and initialisation."
    )

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        if graph.classes is None:
            return nothing_to_do(graph, "the spec has no classes — no class scores to make linear")
        work = NodeList(graph)
        changed: list[Node] = []
        name = graph.output.name
        while True:
            node = work.node(name)
            if node.op.rectifier:
                changed.append(node)
                work.remove(node.name)  # its readers read the scores directly
            elif keeps_scores(node.op):
                pass
            else:
                fused = node.op.activation_op()
                if fused is not None and fused.rectifier:
                    changed.append(node)
                    work.put(node.replace(op=node.op.without_activation()))  # type: ignore[attr-defined]
                break
            if node.inputs[0] == INPUT:
                break
            name = node.inputs[0]
        if not changed:
            return nothing_to_do(graph, "the class scores have no rectifier — already linear")
        return Rewrite(work.graph())
