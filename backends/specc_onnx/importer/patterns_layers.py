"""Patterns of the layers with weights, the pools, the norms and the vectorizing layers: the
inverse of `conv`, `linear`, `batch_norm`, the pools, `flatten` in `specc_onnx.ops` and of
`conv_transpose`, `local_response_norm`. Weights come out in PyTorch's layouts (ONNX Conv
and ConvTranspose share them; Gemm's B is transposed unless `transB`)."""

from __future__ import annotations

import math

import numpy as np

from specc_onnx.importer.match import (
    Match,
    NoMatch,
    Result,
    const_input,
    only_reader,
    pair,
    squash,
    symmetric_pads,
)
from specc_onnx.importer.patterns_activations import fuse_activation
from specc_onnx.importer.view import ModelView, OnnxNode


def _padding(kernel: tuple[int, int], dilation: tuple[int, int], pads: tuple[int, int]):
    """specc's spelling of symmetric pads: 'valid', 'same' (what 'same' gives for this kernel), or numbers."""
    if pads == (0, 0):
        return "valid"
    same = tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation))
    if all((d * (k - 1)) % 2 == 0 for k, d in zip(kernel, dilation)) and pads == same:
        return "same"
    return squash(*pads)


def _window(node: OnnxNode, weight_shape: tuple | None = None) -> tuple | NoMatch:
    """(kernel, strides, dilations, pads), each a pair, from a Conv/pool node's attributes."""
    kernel_attr = node.attrs.get("kernel_shape") or (weight_shape[2:] if weight_shape else None)
    if kernel_attr is None:
        return NoMatch("it has no kernel_shape")
    parts = [
        pair(kernel_attr, "kernel"),
        pair(node.attrs.get("strides", [1, 1]), "strides"),
        pair(node.attrs.get("dilations", [1, 1]), "dilations"),
        symmetric_pads(node),
    ]
    for part in parts:
        if isinstance(part, NoMatch):
            return part
    return tuple(parts)


def _bias(view: ModelView, node: OnnxNode, index: int) -> dict[str, np.ndarray] | NoMatch:
    if index >= len(node.inputs) or not node.inputs[index]:
        return {}
    bias = const_input(view, node, index, "bias")
    return bias if isinstance(bias, NoMatch) else {"bias": bias.reshape(-1)}


def conv(view: ModelView, node: OnnxNode) -> Result:
    weight = const_input(view, node, 1, "weight")
    if isinstance(weight, NoMatch):
        return weight
    if weight.ndim != 4:
        return NoMatch(f"a {weight.ndim - 2}-D convolution — specc's conv is 2-D")
    window = _window(node, weight.shape)
    if isinstance(window, NoMatch):
        return window
    kernel, stride, dilation, pads = window
    bias = _bias(view, node, 2)
    if isinstance(bias, NoMatch):
        return bias
    op = {
        "type": "conv",
        "filters": int(weight.shape[0]),
        "kernel": squash(*kernel),
        "stride": squash(*stride),
        "padding": _padding(kernel, dilation, pads),
        "dilation": squash(*dilation),
        "groups": int(node.attrs.get("group", 1)),
        "bias": bool(bias),
    }
    return fuse_activation(view, Match(op, (node.inputs[0],), (node,), node, {"weight": weight, **bias}))


def conv_transpose(view: ModelView, node: OnnxNode) -> Result:
    weight = const_input(view, node, 1, "weight")
    if isinstance(weight, NoMatch):
        return weight
    if weight.ndim != 4:
        return NoMatch(f"a {weight.ndim - 2}-D transposed convolution — specc's is 2-D")
    if "output_shape" in node.attrs:
        return NoMatch("it sets output_shape — specc needs pads and output_padding")
    window = _window(node, weight.shape)
    if isinstance(window, NoMatch):
        return window
    kernel, stride, dilation, pads = window
    extra = pair(node.attrs.get("output_padding", [0, 0]), "output_padding")
    bias = _bias(view, node, 2)
    if isinstance(extra, NoMatch) or isinstance(bias, NoMatch):
        return extra if isinstance(extra, NoMatch) else bias  # type: ignore[return-value]
    groups = int(node.attrs.get("group", 1))
    op = {
        "type": "conv_transpose",
        "filters": int(weight.shape[1]) * groups,
        "kernel": squash(*kernel),
        "stride": squash(*stride),
        "padding": squash(*pads),
        "output_padding": squash(*extra),
        "dilation": squash(*dilation),
        "groups": groups,
        "bias": bool(bias),
    }
    return fuse_activation(view, Match(op, (node.inputs[0],), (node,), node, {"weight": weight, **bias}))


def gemm(view: ModelView, node: OnnxNode) -> Result:
    if node.attrs.get("transA", 0):
        return NoMatch("transA=1 — specc's linear reads (N, features) rows")
    if not (math.isclose(node.attrs.get("alpha", 1.0), 1.0) and math.isclose(node.attrs.get("beta", 1.0), 1.0)):
        return NoMatch("alpha or beta is not 1 — specc's linear is x·Wᵀ + b")
    weight = const_input(view, node, 1, "weight")
    if isinstance(weight, NoMatch):
        return weight
    weight = weight if node.attrs.get("transB", 0) else weight.T
    bias = _bias(view, node, 2)
    if isinstance(bias, NoMatch):
        return bias
    if bias and bias["bias"].size != weight.shape[0]:
        if bias["bias"].size != 1:
            return NoMatch(f"its bias has {bias['bias'].size} values for {weight.shape[0]} outputs")
        bias = {"bias": np.full(weight.shape[0], bias["bias"][0], dtype=bias["bias"].dtype)}
    return _linear(view, node, np.ascontiguousarray(weight), bias, (node,))


def matmul(view: ModelView, node: OnnxNode) -> Result:
    """MatMul(x, W) with a stored (in, out) W, and the Add of a stored bias after it, if any."""
    weight = const_input(view, node, 1, "weight")
    if isinstance(weight, NoMatch):
        return weight
    if weight.ndim != 2 or len(view.shape(node.inputs[0])) != 2:
        return NoMatch("not a (N, in) x (in, out) product — specc's linear reads flat vectors")
    weight = np.ascontiguousarray(weight.T)
    add = only_reader(view, node.output)
    if add is not None and add.op_type == "Add":
        other = add.inputs[1] if add.inputs[0] == node.output else add.inputs[0]
        bias = view.const(other)
        if bias is not None and bias.size == weight.shape[0]:
            return _linear(view, add, weight, {"bias": bias.reshape(-1)}, (node, add), anchor=node)
    return _linear(view, node, weight, {}, (node,))


def _linear(view, node, weight, bias, nodes, anchor=None) -> Match:
    op = {"type": "linear", "units": int(weight.shape[0]), "bias": bool(bias)}
    layer = Match(op, (nodes[0].inputs[0],), nodes, anchor or node, {"weight": weight, **bias})
    return fuse_activation(view, layer)


def batch_norm(view: ModelView, node: OnnxNode) -> Result:
    if len([o for o in node.outputs if o]) > 1 or node.attrs.get("training_mode", 0):
        return NoMatch("training mode (running statistics as outputs) — export the model in eval mode")
    arrays = {}
    for index, suffix in ((1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")):
        value = const_input(view, node, index, suffix.replace("_", " "))
        if isinstance(value, NoMatch):
            return value
        arrays[suffix] = value.reshape(-1)
    op = {"type": "batch_norm", "eps": float(node.attrs.get("epsilon", 1e-5))}
    return Match(op, (node.inputs[0],), (node,), node, arrays)


def _pool(view: ModelView, node: OnnxNode, kind: str) -> Result:
    if len([o for o in node.outputs if o]) > 1:
        return NoMatch("it also outputs the argmax indices — specc's max_pool returns the values only")
    if node.attrs.get("storage_order", 0):
        return NoMatch("storage_order=1 is not supported")
    window = _window(node)
    if isinstance(window, NoMatch):
        return window
    kernel, stride, dilation, pads = window
    if dilation != (1, 1):
        return NoMatch(f"dilations {list(dilation)} — specc's pools are not dilated")
    op = {
        "type": kind,
        "kernel": squash(*kernel),
        "stride": None if stride == kernel else squash(*stride),  # a pool's stride defaults to its kernel
        "padding": _padding(kernel, dilation, pads),
        "ceil_mode": bool(node.attrs.get("ceil_mode", 0)),
    }
    if kind == "avg_pool":
        op["count_include_pad"] = bool(node.attrs.get("count_include_pad", 0))
    return Match(op, (node.inputs[0],), (node,), node)


def max_pool(view: ModelView, node: OnnxNode) -> Result:
    return _pool(view, node, "max_pool")


def average_pool(view: ModelView, node: OnnxNode) -> Result:
    return _pool(view, node, "avg_pool")


def _then_flatten(view: ModelView, node: OnnxNode, vector: str, map_op: dict) -> Match:
    """A global pool (N, C, 1, 1), and the Flatten/Reshape after it if any: `vector` (C) with
    it, `map_op` (a 1x1 map) without."""
    reader = only_reader(view, node.output)
    if reader is not None and reader.op_type in ("Flatten", "Reshape", "Squeeze"):
        shape = view.shape(reader.output)
        if len(shape) == 2:
            return Match({"type": vector}, (node.inputs[0],), (node, reader), node)
    return Match(map_op, (node.inputs[0],), (node,), node)


def global_average_pool(view: ModelView, node: OnnxNode) -> Result:
    return _then_flatten(view, node, "global_avg_pool", {"type": "adaptive_avg_pool", "output": 1})


def global_max_pool(view: ModelView, node: OnnxNode) -> Result:
    return _then_flatten(view, node, "global_max_pool", {"type": "adaptive_max_pool", "output": 1})


def reduce_mean(view: ModelView, node: OnnxNode) -> Result:
    data, axes = node.inputs[0], node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        value = const_input(view, node, 1, "axes")
        if isinstance(value, NoMatch):
            return value
        axes = value.tolist()
    rank = len(view.shape(data))
    if rank != 4 or axes is None or sorted(int(a) % 4 for a in axes) != [2, 3]:
        return NoMatch(f"it averages over axes {axes} — specc imports a mean over H and W (axes 2, 3) only")
    if node.attrs.get("keepdims", 1):
        return _then_flatten(view, node, "global_avg_pool", {"type": "adaptive_avg_pool", "output": 1})
    return Match({"type": "global_avg_pool"}, (data,), (node,), node)


def lrn(view: ModelView, node: OnnxNode) -> Result:
    op = {
        "type": "local_response_norm",
        "size": int(node.attrs["size"]),
        "alpha": float(node.attrs.get("alpha", 1e-4)),
        "beta": float(node.attrs.get("beta", 0.75)),
        "k": float(node.attrs.get("bias", 1.0)),
    }
    return Match(op, (node.inputs[0],), (node,), node)


def _vectorizes(view: ModelView, node: OnnxNode) -> bool:
    """The output is (N, everything else) of the input, the batch axis kept."""
    before, after = view.shape(node.inputs[0]), view.shape(node.output)
    if len(after) != 2 or len(before) < 2 or not isinstance(after[1], int):
        return False
    rest = before[1:]
    return all(isinstance(d, int) for d in rest) and after[1] == math.prod(rest) and after[0] == before[0]


def flatten(view: ModelView, node: OnnxNode) -> Result:
    if int(node.attrs.get("axis", 1)) != 1:
        return NoMatch(f"axis {node.attrs['axis']} — specc's flatten keeps the batch axis (axis 1)")
    return Match({"type": "flatten"}, (node.inputs[0],), (node,), node)


BATCH = "N"  # the batch size, in a Reshape target read from an exporter's Shape chain


def _target(view: ModelView, value: str, depth: int = 0) -> list | None:
    """A Reshape target as a list of ints and BATCH (the reshaped tensor's batch size), from a
    stored constant or the Shape -> Gather -> Unsqueeze -> Concat chain exporters leave;
    None when it is not static."""
    const = view.const(value)
    if const is not None:
        return [int(v) for v in const.reshape(-1)]
    node = view.producer.get(value)
    if node is None or depth > 8:
        return None
    if node.op_type in ("Unsqueeze", "Squeeze", "Cast"):
        return _target(view, node.inputs[0], depth + 1)
    if node.op_type == "Concat":
        parts = [_target(view, v, depth + 1) for v in node.inputs]
        return None if any(p is None for p in parts) else [d for p in parts for d in p]  # type: ignore[union-attr]
    if node.op_type == "Gather" and view.producer.get(node.inputs[0]) is not None:
        shape_node = view.producer[node.inputs[0]]
        index = view.const(node.inputs[1])
        if shape_node.op_type != "Shape" or index is None or index.size != 1:
            return None
        dims = view.shape(shape_node.inputs[0])
        i = int(index.reshape(-1)[0])
        if i == 0:
            return [BATCH]
        return [dims[i]] if -len(dims) <= i < len(dims) and isinstance(dims[i], int) else None
    return None


def reshape(view: ModelView, node: OnnxNode) -> Result:
    target = _target(view, node.inputs[1])
    if target is None:
        return NoMatch("its target shape is not static (neither stored nor an exporter's Shape chain)")
    before = view.shape(node.inputs[0])
    rest = before[1:]
    if not rest or not all(isinstance(d, int) for d in rest):
        return NoMatch("the shape of its input is unknown")
    features = math.prod(rest)
    batch_ok = (BATCH, 0) + ((1,) if before[0] == 1 else ())
    if len(target) == 2 and (
        (target[0] in batch_ok and target[1] in (-1, features)) or (target[0] == -1 and target[1] == features)
    ):
        return Match({"type": "flatten"}, (node.inputs[0],), (node,), node)
    text = "x".join(map(str, before))
    return NoMatch(f"{text} -> {target} — specc imports a Reshape only as a flatten to (N, features)")


def squeeze(view: ModelView, node: OnnxNode) -> Result:
    if not _vectorizes(view, node):
        return NoMatch("specc imports a Squeeze only as a flatten of an Nx C x1x1 map to (N, C)")
    return Match({"type": "flatten"}, (node.inputs[0],), (node,), node)


PATTERNS = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": batch_norm,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "GlobalMaxPool": global_max_pool,
    "ReduceMean": reduce_mean,
    "LRN": lrn,
    "Flatten": flatten,
    "Reshape": reshape,
    "Squeeze": squeeze,
}
