"""The importer's walk: every ONNX node, in graph order, is covered by one pattern (a specc
layer), passed through (Dropout, Identity), or skipped as a shape computation; anything else
is refused in one line naming the node, its op_type and the reason. The result is checked the
way a spec is: canonical YAML loaded back, shapes inferred and compared with ONNX's, and every
weight against the shape its op declares."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import ValidationError

from specc.emit import to_yaml
from specc.errors import SpecError, UserError
from specc.ir import INPUT, NAME_RE, Graph, Node, lint
from specc.ops import OPS
from specc.shapes import infer
from specc.spec import load_graph_text
from specc_onnx.importer.match import Match, NoMatch, Pattern
from specc_onnx.importer.patterns_activations import RULES as ACTIVATION_RULES
from specc_onnx.importer.patterns_decomposed import DECOMPOSED
from specc_onnx.importer.patterns_layers import PATTERNS as LAYER_PATTERNS
from specc_onnx.importer.patterns_structure import PASS_THROUGH
from specc_onnx.importer.patterns_structure import PATTERNS as STRUCTURE_PATTERNS
from specc_onnx.importer.view import ModelView, OnnxNode

# op_type -> the op's own pattern, whose reason is the one reported when nothing matches
OWN: dict[str, Pattern] = {**LAYER_PATTERNS, **STRUCTURE_PATTERNS}


def _rules() -> dict[str, tuple[Pattern, ...]]:
    """op_type -> the patterns tried on a node of it, in order: the decompositions it can
    begin (each matches only the exact form, so a longer form is found before a shorter one:
    x · x is GELU's start before it is a `mul`), then the op's own pattern."""
    rules: dict[str, tuple[Pattern, ...]] = {}
    for table in (DECOMPOSED, ACTIVATION_RULES, {k: (v,) for k, v in OWN.items()}):
        for op_type, patterns in table.items():
            rules[op_type] = tuple(dict.fromkeys((*rules.get(op_type, ()), *patterns)))
    return rules


PATTERNS: dict[str, tuple[Pattern, ...]] = _rules()
# The last part of an exporter's node name that only repeats the op (`conv1/conv` from specc,
# `/layer1/conv1/Conv` or `/relu/Relu_1` from PyTorch): dropped from the layer's name.
_GENERIC_PARTS = ("conv", "linear")


def refusal(label: str, node: OnnxNode, reason: str) -> UserError:
    return UserError(f"{label}: node {node.label()} ({node.op_type}): {reason}")


@dataclass
class _Walk:
    """What the walk has found so far: layers, their weights, the layer each ONNX value is,
    and the nodes it could not map (with the values that depend on them)."""

    values: dict[str, str]
    nodes: list[Node] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    tainted: set[str] = field(default_factory=set)
    sources: dict[str, str] = field(default_factory=dict)  # layer -> the module its weights are named after
    mapped_before_failure: int = -1  # layers found before the first failure


def import_view(
    view: ModelView, label: str, name: str | None = None, *, allow_partial: bool = False
) -> tuple[Graph, dict[str, np.ndarray], tuple[str, ...], dict[str, str]]:
    """The specc graph, its weights (state_dict names, float32 numpy), notes and the module
    each layer's weights are named after in the model (`layer1.0.conv1`), of a checked model. Every node no pattern maps is reported, one line each (its name, op, position and
    why); with `allow_partial` the spec stops at the last layer mapped before the first."""
    walk = _Walk({view.input_name: INPUT})
    covered: set[int] = set()
    for onnx_node in view.nodes:
        if onnx_node.index in covered or all(o in view.shape_only for o in onnx_node.outputs if o):
            continue  # part of a layer already found, or a shape computation (a Reshape reads it)
        if any(v in walk.tainted for v in onnx_node.inputs):
            walk.tainted.update(onnx_node.outputs)  # downstream of a node already reported ...
            if onnx_node.op_type not in PATTERNS and onnx_node.op_type not in PASS_THROUGH:
                where = _where(view, onnx_node, walk.values)  # ... but an op specc lacks is named too
                walk.failures.append(str(refusal(label, onnx_node, "specc has no layer for this op")).replace(
                    f"({onnx_node.op_type}): ", f"({onnx_node.op_type}) {where}: ", 1))  # fmt: skip
            continue
        try:
            _step(view, onnx_node, walk, covered, label)
        except UserError as exc:
            if walk.mapped_before_failure < 0:
                walk.mapped_before_failure = len(walk.nodes)
            where = _where(view, onnx_node, walk.values)
            walk.failures.append(str(exc).replace(f"({onnx_node.op_type}): ", f"({onnx_node.op_type}) {where}: ", 1))
            walk.tainted.update(onnx_node.outputs)
    if walk.failures and not allow_partial:
        raise UserError("\n".join(walk.failures))
    notes: tuple[str, ...] = ()
    outputs = None
    if walk.failures:
        kept = walk.nodes[: walk.mapped_before_failure]
        if not kept:
            raise UserError(f"{walk.failures[0]} — and no layer comes before it, so nothing is left to import")
        outputs = [kept[-1].name]
        notes = (f"--allow-partial: the spec stops at layer {kept[-1].name}, before {walk.failures[0]}",)
        names = {n.name for n in kept}
        walk.weights = {k: v for k, v in walk.weights.items() if k.split(".", 1)[0] in names}
        walk.values = {v: layer for v, layer in walk.values.items() if layer in names or layer == INPUT}
        walk.nodes = kept
    graph = _graph(view, walk.nodes, walk.values, label, name, outputs)
    _check_weights(graph, walk.weights, label)
    sources = {layer: module for layer, module in walk.sources.items() if layer in graph.by_name}
    return graph, walk.weights, notes, sources


def _step(view: ModelView, onnx_node: OnnxNode, walk: _Walk, covered: set[int], label: str) -> None:
    if onnx_node.op_type in PASS_THROUGH:
        walk.values[onnx_node.output] = _layer_of(walk.values, onnx_node.inputs[0], label, onnx_node)
        return
    match = first_match(view, onnx_node)
    if isinstance(match, NoMatch):
        raise refusal(label, onnx_node, match.reason)
    layer = _node(match, walk.values, {n.name for n in walk.nodes}, label)
    covered.update(n.index for n in match.nodes)
    walk.nodes.append(layer)
    walk.values[match.output] = layer.name
    walk.weights.update({f"{layer.name}.{k}": np.asarray(v, dtype=np.float32) for k, v in match.weights.items()})
    source = next((m.group(1) for m in map(_STATE_DICT_NAME.fullmatch, match.anchor.inputs[1:]) if m), None)
    if source is not None and match.weights:
        walk.sources[layer.name] = source


def _where(view: ModelView, node: OnnxNode, values: dict[str, str]) -> str:
    """Where a node sits: its position and the layer it reads (`#12 of 40, after layer conv3`)."""
    reads = [values[v] for v in node.inputs if v in values]
    after = "after the input" if reads and reads[0] == INPUT else f"after layer {reads[0]}" if reads else ""
    return ", ".join(p for p in (f"at #{node.index + 1} of {len(view.nodes)}", after) if p)


def first_match(view: ModelView, node: OnnxNode) -> Match | NoMatch:
    """The first pattern of the node's op that matches, or why not: the op's own pattern's
    reason, else the first one's."""
    reasons: dict[Pattern, str] = {}
    for pattern in PATTERNS.get(node.op_type, ()):
        match = pattern(view, node)
        if isinstance(match, Match):
            return match
        reasons[pattern] = match.reason
    own = OWN.get(node.op_type)
    if own is not None:
        return NoMatch(reasons[own])
    return NoMatch(next(iter(reasons.values()), "specc has no layer for this op"))


def _layer_of(values: dict[str, str], value: str, label: str, node: OnnxNode) -> str:
    if value not in values:
        raise refusal(label, node, f"it reads '{value}', which is not the output of a layer specc imports")
    return values[value]


def _node(match: Match, values: dict[str, str], taken: set[str], label: str) -> Node:
    cls = OPS[match.op["type"]]
    try:
        op = cls.model_validate(match.op)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise refusal(label, match.anchor, f"{match.op['type']} {where}: {error['msg']}") from None
    inputs = tuple(_layer_of(values, v, label, match.anchor) for v in match.inputs)
    return Node(layer_name(_naming_node(match), cls.name_prefix, taken), op, inputs)


# A stored weight named as PyTorch's state_dict names it: the module path names the layer.
_STATE_DICT_NAME = re.compile(r"([A-Za-z_][\w.]*)\.(weight|bias)")


def _naming_node(match: Match) -> OnnxNode:
    """The node whose name names the layer: for a layer with weights stored under state_dict
    names, its module (`layer1.0.conv1.weight` -> `layer1.0.conv1`); for a node the dynamo
    exporter scoped, its module; else the one named after the scope all the layer's nodes
    share (specc's `t` beside `t/pool`, `c0` beside `c0/conv`), else the anchor."""
    anchor = match.anchor
    for value in anchor.inputs[1:]:
        found = _STATE_DICT_NAME.fullmatch(value)
        if found:
            return replace(anchor, name=found.group(1))
    if anchor.scope:
        return replace(anchor, name=anchor.scope)
    paths = [[p for p in n.name.split("/") if p] for n in match.nodes if n.op_type != "Constant"]
    if len(paths) < 2 or not all(paths):
        return match.anchor
    common = paths[0]
    for path in paths[1:]:
        common = common[
            : next((i for i, (a, b) in enumerate(zip(common, path)) if a != b), min(len(common), len(path)))
        ]
    named = [n for n, path in zip((n for n in match.nodes if n.op_type != "Constant"), paths) if path == common]
    return named[0] if named else match.anchor


def layer_name(node: OnnxNode, prefix: str, taken: set[str]) -> str:
    """A valid, unused layer name from an ONNX node name (`/layer1/layer1.0/conv1/Conv` ->
    `layer1_0_conv1`, `conv3/conv` -> `conv3`); the op's prefix and a number without one."""
    parts = [p for p in node.name.split("/") if p]
    if len(parts) > 1 and _repeats_op(parts[-1], node.op_type):
        parts = parts[:-1]
    elif len(parts) == 1 and re.fullmatch(rf"{node.op_type}(_\d+)?", parts[0]):
        parts = []  # `/Reshape`, `Relu_3`: a name that says nothing but the op
    # PyTorch scopes repeat their parent: /layer1/layer1.0/conv1 is module layer1.0.conv1.
    parts = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    base = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))).strip("_")
    if base and not NAME_RE.match(base):
        base = f"{prefix}_{base}"  # `0_conv` -> `conv_0_conv`: names start with a letter
    if base == INPUT:
        base = f"{prefix}_input"
    if not base:  # numbered as the spec's own auto names are: flatten1, flatten2, ...
        i = 1
        while f"{prefix}{i}" in taken:
            i += 1
        return f"{prefix}{i}"
    if not _allowed(base):  # a Python keyword, or a name torch.nn.Module uses itself
        base = f"{base}_layer"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _allowed(name: str) -> bool:
    """Whether the spec language accepts `name` for a layer (asked of `lint`, which knows the
    reserved names)."""
    probe = Graph("probe", (1, 1, 1), None, (Node(name, OPS["identity"](), (INPUT,)),))
    return not lint(probe)


def _repeats_op(part: str, op_type: str) -> bool:
    lowered = part.lower()
    return lowered in _GENERIC_PARTS or re.fullmatch(rf"{op_type.lower()}(_\d+)?", lowered) is not None


def _graph(
    view: ModelView, nodes: list[Node], values: dict[str, str], label: str, name: str | None, partial=None
) -> Graph:
    if not nodes:
        raise UserError(f"{label}: no layers — the model computes nothing specc imports")
    outputs = list(partial or [])
    for value in view.outputs if partial is None else ():
        layer = values.get(value)
        if layer is None or layer == INPUT:
            raise UserError(f"{label}: output '{value}' is not computed by a layer — nothing to import")
        outputs.append(layer)
    classes = None
    out_shape = view.output_shapes[0] if len(outputs) == 1 and partial is None else ()
    if len(out_shape) == 2 and isinstance(out_shape[1], int):
        classes = out_shape[1]  # the model ends in a flat vector of class scores
    listed = tuple(outputs) if len(outputs) > 1 or outputs[-1] != nodes[-1].name else ()
    graph = Graph(
        name=_graph_name(name or view.name),
        input_shape=view.input_shape,
        classes=classes,
        nodes=tuple(nodes),
        description=" ".join(view.description.split()),
        labels=view.labels if classes is not None and view.labels and len(view.labels) == classes else None,
        outputs=listed,
    )
    try:  # what a spec goes through: the text it will be written as must load back the same
        loaded = load_graph_text(to_yaml(graph), f"{label} (imported)")
        shapes = infer(loaded).shapes
    except SpecError as exc:
        raise UserError(f"{label}: the imported network is not a valid spec: {exc.diagnostics[0].message}") from None
    _compare_shapes(view, loaded, shapes, values, label)
    return loaded


def _graph_name(text: str) -> str:
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", text)).strip("_")
    return name if name and NAME_RE.match(name) else f"imported_{name}" if name else "imported"


def _compare_shapes(view: ModelView, graph: Graph, shapes: dict, values: dict[str, str], label: str) -> None:
    """Every layer's per-sample shape as specc infers it equals ONNX's, where ONNX knows it."""
    for value, layer in values.items():
        onnx_shape = view.shape(value)
        if layer == INPUT or not onnx_shape or not all(isinstance(d, int) for d in onnx_shape[1:]):
            continue
        if tuple(onnx_shape[1:]) != tuple(shapes[layer]):
            theirs, ours = "x".join(map(str, onnx_shape[1:])), "x".join(map(str, shapes[layer]))
            raise UserError(
                f"{label}: layer {layer} would compute {ours}, the ONNX model {theirs} (value '{value}')"
                " — not imported, as the spec would compute something else"
            )


def _check_weights(graph: Graph, weights: dict[str, np.ndarray], label: str) -> None:
    shapes = infer(graph).shapes
    for node in graph.nodes:
        declared = node.op.weights([shapes[i] for i in node.inputs])
        for suffix, shape in declared.items():
            key = f"{node.name}.{suffix}"
            array = weights.get(key)
            if array is None:
                raise UserError(f"{label}: layer {node.name} needs '{key}', which the model does not store")
            if tuple(array.shape) != tuple(shape):
                if array.size == int(np.prod(shape)):
                    weights[key] = array.reshape(shape)
                    continue
                raise UserError(f"{label}: '{key}' has shape {tuple(array.shape)}, layer {node.name} needs {shape}")
