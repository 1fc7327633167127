"""Fold inference-mode batch_norm into the conv or linear layer that feeds it, weights included.

The graph rewrite is the registered pass `fold_batch_norm` (`specc.transforms.fold_batch_norm`),
run here through the pass manager, so that the folded graph is linted and shape-checked like
every transform's output. This module computes the folded numbers of the pairs the pass
folded: BN(W x + b) = s * (W x + b - mean) + beta with s = gamma / sqrt(var + eps), so
W' = s * W (per output channel) and b' = s * (b - mean) + beta. The input graph and weights
are not touched; batch_norms left in place come back with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specc.ir import Graph, Node
from specc.ops import BatchNorm
from specc.transforms.fold_batch_norm import FoldBatchNorm, plan
from specc.transforms.pipeline import run
from specc_onnx.builder import require_weight


@dataclass(frozen=True)
class FoldResult:
    graph: Graph
    weights: dict[str, np.ndarray]
    folded: tuple[tuple[str, str], ...]  # (conv or linear, batch_norm) pairs, in the order folded
    skipped: tuple[tuple[str, str], ...]  # (batch_norm, why it was not folded)


def fold_batch_norm(graph: Graph, weights: dict[str, np.ndarray]) -> FoldResult:
    """Fold every foldable batch_norm; the folded layer keeps its name and takes the
    batch_norm's place in spec order (its only reader), with a bias."""
    checked = run(graph, [FoldBatchNorm(skip_unsupported=True)])
    folds = plan(graph)
    assert folds.graph == checked.graph, "the pass manager ran the same rewrite"
    shapes = checked.source_report.shapes
    weights = dict(weights)
    biased = {n.name for n in graph.nodes if "bias" in n.op.weights([shapes[s] for s in n.inputs])}
    for source, norm in folds.folded:
        layout = graph.node(source).op.channel_layout([shapes[s] for s in graph.node(source).inputs])
        _fold_weights(weights, graph.node(source), source in biased, graph.node(norm), layout)
        biased.add(source)  # in a chain (conv -> bn -> bn) the next one folds into this bias
    return FoldResult(checked.graph, weights, folds.folded, folds.skipped)


def _fold_weights(
    weights: dict[str, np.ndarray], source: Node, has_bias: bool, norm: Node, layout: tuple[tuple, tuple]
) -> None:
    key = f"{source.name}.weight"
    if key not in weights:
        require_weight(weights, key, ())  # raises the one-line "no such weight" error
    w = np.asarray(weights[key], dtype=np.float64)
    view, per_channel = layout  # the output channels' place in the weight (`LayerOp.channel_layout`)
    channels = (int(np.prod(per_channel)),)

    def get(layer: Node, key: str, present: bool, default: float) -> np.ndarray:
        if not present:
            return np.full(channels, default)
        return require_weight(weights, f"{layer.name}.{key}", channels).astype(np.float64)

    bn = norm.op
    assert isinstance(bn, BatchNorm), "batch_norm is the one layer type with the `normalizes` trait"
    b = get(source, "bias", has_bias, 0.0)
    gamma, beta = get(norm, "weight", bn.affine, 1.0), get(norm, "bias", bn.affine, 0.0)
    mean, var = get(norm, "running_mean", True, 0.0), get(norm, "running_var", True, 1.0)
    scale = gamma / np.sqrt(var + bn.eps)
    # float64 arithmetic, float32 result: the folded weights round once.
    folded = w.reshape(view) * scale.reshape(per_channel)
    weights[f"{source.name}.weight"] = folded.reshape(w.shape).astype(np.float32)
    weights[f"{source.name}.bias"] = ((b - mean) * scale + beta).astype(np.float32)
