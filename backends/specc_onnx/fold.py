"""Fold inference-mode batch_norm into the conv or linear layer that feeds it.

BN(W x + b) = s * (W x + b - mean) + beta with s = gamma / sqrt(var + eps), which is again
an affine layer: W' = s * W (per output channel) and b' = s * (b - mean) + beta. The pass
returns a new graph and new weights (valid IR in, valid IR out) plus, for every batch_norm
it left alone, the reason why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specc.ir import Graph, Node
from specc_onnx.builder import require_weight


@dataclass(frozen=True)
class FoldResult:
    graph: Graph
    weights: dict[str, np.ndarray]
    folded: tuple[tuple[str, str], ...]  # (conv or linear, batch_norm) pairs
    skipped: tuple[tuple[str, str], ...]  # (batch_norm, why it was not folded)


def why_not_foldable(graph: Graph, bn: Node) -> str | None:
    """None when `bn` can be folded into its producer, else the reason it cannot."""
    source = graph.by_name.get(bn.inputs[0])
    if source is None:
        return "it reads the network input, not a conv or linear layer"
    if source.type not in ("conv", "linear"):
        return f"its input '{source.name}' is a {source.type}, not a conv or linear layer"
    if source.op.activation != "none":
        return f"'{source.name}' applies {source.op.activation} before it"
    readers = graph.consumers(source.name)
    if len(readers) != 1:
        others = ", ".join(n.name for n in readers if n.name != bn.name)
        return f"'{source.name}' also feeds {others}"
    if source.name == graph.output.name:
        return f"'{source.name}' is the network output"
    return None


def fold_batch_norm(graph: Graph, weights: dict[str, np.ndarray]) -> FoldResult:
    """Fold every foldable batch_norm; the folded layer keeps its name and takes the
    batch_norm's place in spec order (its only reader), with a bias."""
    weights = dict(weights)
    nodes = list(graph.nodes)
    folded, skipped = [], []
    for bn in graph.nodes:
        if bn.type != "batch_norm":
            continue
        reason = why_not_foldable(graph.with_nodes(nodes), bn)
        if reason:
            skipped.append((bn.name, reason))
            continue
        source = next(n for n in nodes if n.name == bn.inputs[0])
        _fold_weights(weights, source, bn)
        merged = source.with_params(bias=True)
        nodes = [merged if n.name == bn.name else n for n in nodes if n.name != source.name]
        nodes = [n.replace(inputs=tuple(source.name if i == bn.name else i for i in n.inputs)) for n in nodes]
        folded.append((source.name, bn.name))
    return FoldResult(graph.with_nodes(nodes), weights, tuple(folded), tuple(skipped))


def _fold_weights(weights: dict[str, np.ndarray], source: Node, bn: Node) -> None:
    key = f"{source.name}.weight"
    if key not in weights:
        require_weight(weights, key, ())  # raises the one-line "no such weight" error
    w = np.asarray(weights[key], dtype=np.float64)
    channels = (w.shape[0],)

    def get(layer: Node, key: str, present: bool, default: float) -> np.ndarray:
        if not present:
            return np.full(channels, default)
        return require_weight(weights, f"{layer.name}.{key}", channels).astype(np.float64)

    b = get(source, "bias", source.op.bias, 0.0)
    gamma, beta = get(bn, "weight", bn.op.affine, 1.0), get(bn, "bias", bn.op.affine, 0.0)
    mean, var = get(bn, "running_mean", True, 0.0), get(bn, "running_var", True, 1.0)
    scale = gamma / np.sqrt(var + bn.op.eps)
    # float64 arithmetic, float32 result: the folded weights round once.
    weights[f"{source.name}.weight"] = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
    weights[f"{source.name}.bias"] = ((b - mean) * scale + beta).astype(np.float32)
