"""Layers ONNX has no single op for, which specc emits as a run of nodes (`specc_onnx.ops_*`):
gelu's tanh form, softplus with beta, scale, maxout, group/layer/instance norm, LP pooling,
the adaptive pools of uneven windows and upsample. Each rule names the candidate layers the
trigger node suggests (read from its constants and the nodes right after it); `reemit`
emits each candidate and keeps the one whose nodes are exactly the model's."""

from __future__ import annotations

from specc_onnx.importer.match import NoMatch, Result
from specc_onnx.importer.reemit import first_const, following, match_emitted
from specc_onnx.importer.view import ModelView, OnnxNode


def _eps(view: ModelView, node: OnnxNode, op_type: str) -> float | None:
    norm = node if node.op_type == op_type else following(view, node, op_type)
    return None if norm is None else float(norm.attrs.get("epsilon", 1e-5))


def gelu_tanh(view: ModelView, node: OnnxNode) -> Result:
    """x · x begins tanh(√(2/π) · (x + 0.044715 · x³)) as specc writes it below opset 20."""
    if len(node.inputs) != 2 or node.inputs[0] != node.inputs[1]:
        return NoMatch("not x · x, which begins GELU's tanh form")
    return match_emitted(view, node, [{"type": "gelu", "approximate": "tanh"}], "gelu (tanh)")


def softplus_scaled(view: ModelView, node: OnnxNode) -> Result:
    """Softplus with beta (x · β first) or its threshold (Softplus, Greater, Where)."""
    above = following(view, node, "Greater", 4)
    threshold = first_const(view, above) if above is not None else None
    beta = first_const(view, node) if node.op_type == "Mul" else 1.0
    if threshold is None or beta is None:
        return NoMatch("not softplus's x · β, Softplus, Greater than a threshold and Where")
    return match_emitted(view, node, [{"type": "softplus", "beta": beta, "threshold": threshold}], "softplus")


def scale(view: ModelView, node: OnnxNode) -> Result:
    factors = [view.const(v) for v in node.inputs if view.const(v) is not None]
    if len(factors) != 1 or factors[0].size < 2 or factors[0].shape[1:] not in ((), (1, 1)):  # type: ignore[union-attr]
        return NoMatch("not a product with one stored factor per channel")
    return match_emitted(view, node, [{"type": "scale"}], "scale")


def maxout(view: ModelView, node: OnnxNode) -> Result:
    target = view.const(node.inputs[1]) if len(node.inputs) > 1 else None
    if target is None or target.size < 3:
        return NoMatch("not maxout's Reshape to (N, C/k, k, ...)")
    return match_emitted(view, node, [{"type": "maxout", "pieces": int(target.reshape(-1)[2])}], "maxout")


def group_norm(view: ModelView, node: OnnxNode) -> Result:
    target = view.const(node.inputs[1]) if len(node.inputs) > 1 else None
    eps = _eps(view, node, "InstanceNormalization")
    if target is None or target.size != 3 or eps is None:
        return NoMatch("not group_norm's Reshape to (N, G, -1) and InstanceNormalization")
    groups = int(target.reshape(-1)[1])
    return match_emitted(
        view, node, [{"type": "group_norm", "groups": groups, "eps": eps, "affine": a} for a in (True, False)],
        "group_norm",
    )  # fmt: skip


def instance_norm(view: ModelView, node: OnnxNode) -> Result:
    eps = _eps(view, node, "InstanceNormalization")
    return match_emitted(
        view, node, [{"type": "instance_norm", "eps": eps, "affine": a} for a in (True, False)], "instance_norm"
    )


def layer_norm(view: ModelView, node: OnnxNode) -> Result:
    eps = _eps(view, node, "LayerNormalization")
    if eps is None:
        return NoMatch("no LayerNormalization follows — specc has no layer for this op")
    return match_emitted(
        view, node, [{"type": "layer_norm", "eps": eps, "affine": a} for a in (True, False)], "layer_norm"
    )


def lp_pool(view: ModelView, node: OnnxNode) -> Result:
    p, pool = first_const(view, node), following(view, node, "AveragePool", 2)
    if p is None or pool is None:
        return NoMatch("not LP pooling's x^p, AveragePool, · area, ^(1/p)")
    kernel, stride = [int(k) for k in pool.attrs["kernel_shape"]], [int(s) for s in pool.attrs.get("strides", [1, 1])]
    candidates = [
        {"type": "lp_pool", "p": p, "kernel": kernel, "stride": stride, "ceil_mode": ceil} for ceil in (False, True)
    ]
    return match_emitted(view, node, candidates, "lp_pool")


def adaptive_avg_pool(view: ModelView, node: OnnxNode) -> Result:
    rows = view.const(node.inputs[0])
    cols_node = following(view, node, "MatMul", 1)
    cols = view.const(cols_node.inputs[1]) if cols_node is not None else None
    if rows is None or cols is None or rows.ndim != 2 or cols.ndim != 2:
        return NoMatch("not an adaptive average pool's rows · X · columns")
    output = [int(rows.shape[0]), int(cols.shape[1])]
    return match_emitted(view, node, [{"type": "adaptive_avg_pool", "output": output}], "adaptive_avg_pool")


def adaptive_max_pool(view: ModelView, node: OnnxNode) -> Result:
    last = following(view, node, "Reshape", 6)
    target = view.const(last.inputs[1]) if last is not None else None
    if target is None or target.size != 4:
        return NoMatch("not an adaptive max pool's Gather of windows and ReduceMax")
    output = [int(d) for d in target.reshape(-1)[2:]]
    return match_emitted(view, node, [{"type": "adaptive_max_pool", "output": output}], "adaptive_max_pool")


def upsample(view: ModelView, node: OnnxNode) -> Result:
    """Gathers of rows, then of columns (nearest), or weighted pairs of them (bilinear)."""
    shape = view.shape(node.inputs[0])
    gathers = [n for n in view.nodes[node.index : node.index + 12] if n.op_type == "Gather"]
    sizes: dict[int, int] = {}
    for gather in gathers:
        index = view.const(gather.inputs[1])
        if index is not None:
            sizes.setdefault(int(gather.attrs.get("axis", 0)), int(index.size))
    if len(shape) != 4 or not sizes:
        return NoMatch("not upsample's gathers of rows and columns")
    size = [sizes.get(2, shape[2]), sizes.get(3, shape[3])]
    candidates = []
    for mode, corners in (("nearest", False), ("bilinear", False), ("bilinear", True)):
        ratio = [size[0] / shape[2], size[1] / shape[3]]
        if ratio[0] == ratio[1] and ratio[0] == int(ratio[0]):  # a whole factor reads as `scale`
            candidates.append({"type": "upsample", "mode": mode, "scale": int(ratio[0]), "align_corners": corners})
        candidates.append({"type": "upsample", "mode": mode, "size": size, "align_corners": corners})
    return match_emitted(view, node, candidates, "upsample")


# op_type of the first node -> rules, tried after that op's own pattern
DECOMPOSED = {
    "Mul": (scale, gelu_tanh, softplus_scaled),
    "Softplus": (softplus_scaled,),
    "Reshape": (maxout, group_norm, adaptive_max_pool),
    "InstanceNormalization": (instance_norm,),
    "Transpose": (layer_norm,),
    "LayerNormalization": (layer_norm,),
    "Pow": (lp_pool,),
    "MatMul": (adaptive_avg_pool,),
    "Gather": (upsample,),
}
