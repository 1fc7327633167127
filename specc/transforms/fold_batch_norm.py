"""Fold each inference-mode batch_norm into the conv or linear layer that feeds it.

In inference a batch_norm is a per-channel affine map, BN(y) = s * (y - mean) + beta with
s = gamma / sqrt(var + eps); after an affine layer y = W x + b the two are again one affine
layer, W' = s * W (per output channel) and b' = s * (b - mean) + beta. This is the graph part
of the rewrite: the producer keeps its name and settings, gains a bias, and takes the
batch_norm's place in spec order; the batch_norm's readers read it. Which pairs were folded,
in order, is `plan(graph).folded`; the numbers (W', b') are computed by whoever holds the
weights — the ONNX backend (`specc_onnx.fold`) for the models it emits.

A batch_norm folds only where nothing else sees the value between the two layers: it must
read a layer with a width (conv, linear) that applies no fused activation and feeds nothing
else. Where not, it is refused, or with `skip_unsupported` left in place, with the reason.
Chains fold one after another (conv -> bn -> bn becomes one conv).

The result is an inference graph: a bias does not train like the batch_norm it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from specc.ir import Graph, Node
from specc.ops import OPS
from specc.shapes import ShapeReport
from specc.transforms.base import Rewrite, Transform, finish, located, nothing_to_do, skip_unsupported_option

# The layer types a normalisation folds into (those with an affine weight and bias), by name.
_AFFINE = " or ".join(kind for kind, cls in OPS.items() if cls.width_field is not None)
_NORMS = " or ".join(kind for kind, cls in OPS.items() if cls.normalizes)


@dataclass(frozen=True)
class FoldPlan:
    """The folded graph, the (conv or linear, batch_norm) pairs in the order they were folded,
    and the (batch_norm, reason) of each one left in place."""

    graph: Graph
    folded: tuple[tuple[str, str], ...]
    skipped: tuple[tuple[str, str], ...]


def why_not_foldable(graph: Graph, norm: Node) -> str | None:
    """None when `norm` can be folded into the layer it reads, else the reason it cannot."""
    source = graph.by_name.get(norm.inputs[0])
    if source is None:
        return f"it reads the network input, not a {_AFFINE} layer"
    if source.op.width_field is None:
        return f"its input '{source.name}' is a {source.type}, not a {_AFFINE} layer"
    activation = source.op.activation_op()
    if activation is not None:
        return f"'{source.name}' applies {activation.kind} before it"
    readers = graph.consumers(source.name)
    if len(readers) != 1:
        others = ", ".join(n.name for n in readers if n.name != norm.name)
        return f"'{source.name}' also feeds {others}"
    if source.name in graph.output_names:
        return f"'{source.name}' is {'a network output (outputs:)' if graph.outputs else 'the network output'}"
    return None


def plan(graph: Graph) -> FoldPlan:
    """Fold every foldable normalisation, in spec order; the input graph is not touched."""
    nodes = list(graph.nodes)
    outputs = graph.outputs
    folded: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for name in [n.name for n in graph.nodes if n.op.normalizes]:
        work = graph.with_nodes(nodes)
        norm = work.node(name)  # its input may be a layer folded a step before
        reason = why_not_foldable(work, norm)
        if reason:
            skipped.append((name, reason))
            continue
        source = work.node(norm.inputs[0])
        merged = source.with_params(bias=True)
        nodes = [merged if n.name == name else n for n in nodes if n.name != source.name]
        nodes = [n.replace(inputs=tuple(source.name if i == name else i for i in n.inputs)) for n in nodes]
        outputs = tuple(source.name if o == name else o for o in outputs)  # it now computes the output
        folded.append((source.name, name))
    return FoldPlan(graph.with_nodes(nodes).replace(outputs=outputs), tuple(folded), tuple(skipped))


@dataclass(frozen=True)
class FoldBatchNorm(Transform):
    """Fold each batch_norm into the conv or linear layer before it (an inference graph)."""

    name: ClassVar[str] = "fold_batch_norm"
    help: ClassVar[str] = "fold each batch_norm into the conv or linear layer before it (for inference)"
    rationale: ClassVar[str] = (
        "In inference a batch_norm is a per-channel scale and shift, which the affine layer before "
        "it can absorb: one layer less to run, the same function. The ONNX backend emits models "
        "through this pass (compile --no-fold keeps the batch_norms); on a spec it shows the "
        "inference graph. The folded values need the trained statistics, so --weights refuses it."
    )
    skip_unsupported: bool = skip_unsupported_option()

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        if not any(n.op.normalizes for n in graph.nodes):
            return nothing_to_do(graph, f"no {_NORMS} layer — nothing to fold")
        result = plan(graph)
        refusals = [located(graph.node(name), f"cannot fold {name}: {why}") for name, why in result.skipped]
        return finish(result.graph, refusals, self.skip_unsupported)
