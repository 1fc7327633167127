"""Width multiplier: scale every hidden channel count by one factor.

Every convolution's `filters` and every linear layer's `units` is multiplied by `factor`
and rounded to the nearest multiple of `round_to` (at least one multiple), so that a 0.5x or
2x variant of a model is one flag away. The classifier (the layer(s) producing the class
scores) keeps its count, and the input keeps its channels, so the task does not change.
Equal counts stay equal, so `add` branches keep matching; a depthwise convolution
(groups = channels) stays depthwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from specc.errors import UserError
from specc.ir import Graph
from specc.shapes import ShapeReport
from specc.transforms.base import Rewrite, Transform, argument, nothing_to_do, option
from specc.transforms.rewrite import classifier_layers


def scaled(count: int, factor: float, round_to: int) -> int:
    """`count * factor` rounded half up to a multiple of `round_to`, at least `round_to`."""
    multiples = math.floor(count * factor / round_to + 0.5)
    return max(1, multiples) * round_to


@dataclass(frozen=True)
class WidthMult(Transform):
    """Multiply hidden channel counts by `factor`, rounded to a multiple of `round_to`."""

    name: ClassVar[str] = "width_mult"
    help: ClassVar[str] = "scale every hidden channel count by F (rounded to --round N); classifier untouched"
    rationale: ClassVar[str] = (
        "A cheap capacity knob: half-width models train 4x faster, double-width ones test "
        "whether a result is capacity-bound. The class count and the input are not touched."
    )
    factor: float = argument(metavar="F")
    round_to: int = option(
        1,
        flag="--round",
        metavar="N",
        help="round scaled channel counts of --width-mult to a multiple of N (default 1)",
    )

    def __post_init__(self):
        super().__post_init__()
        factor = self.factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1e6:
            shown = f"{factor:g}" if isinstance(factor, (int, float)) else repr(factor)
            if isinstance(factor, (int, float)) and factor >= 1e6:  # "expected > 0" would puzzle here
                raise UserError(f"--width-mult {shown}: too large — expected a number > 0 and below 1e6, e.g. 0.5 or 2")
            raise UserError(f"--width-mult {shown}: expected a number > 0, e.g. 0.5 or 2")
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, int) or self.round_to < 1:
            raise UserError(f"round {self.round_to!r}: expected a positive integer, e.g. 8")

    def label(self) -> str:
        suffix = f", round={self.round_to}" if self.round_to != 1 else ""
        return f"{self.name}={self.factor:g}{suffix}"

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        heads, _ = classifier_layers(graph)
        keep = {n.name for n in heads}
        hidden = {n.name for n in graph.nodes if n.op.width_field is not None and n.name not in keep}
        if not hidden:
            return nothing_to_do(graph, "no hidden conv or linear layer — nothing to scale")
        nodes = []
        for node in graph.nodes:
            if node.name in hidden:
                node = self._widened(node, report.shapes[node.inputs[0]][0])
            nodes.append(node)
        return Rewrite(graph.with_nodes(nodes))

    def _widened(self, node, in_channels: int):
        op, field = node.op, node.op.width_field
        width = getattr(op, field)
        groups = getattr(op, "groups", 1)  # grouped convolutions; one group for the others
        if groups > 1 and groups == in_channels == width:
            # Depthwise: one filter per channel, before and after.
            width = scaled(width, self.factor, self.round_to)
            return node.with_params(**{field: width, "groups": width})
        step = math.lcm(self.round_to, groups)
        return node.with_params(**{field: scaled(width, self.factor, step)})
