"""Canonical YAML for a graph (`specc fmt`, `specc transform`).

Every layer is written with its explicit name, and with the parameters that differ from what
the spec's `defaults` (or else the op's own defaults) would give, so that loading the text
again yields an identical IR. One flow mapping per layer keeps specs diff-friendly.
"""

from __future__ import annotations

import yaml

from specc.ir import INPUT, Graph, Node

SCHEMA_MODELINE = "# yaml-language-server: $schema="
# The parameters a reader looks for first; the rest follow in the op's declaration order.
_FIRST = ("filters", "units", "kernel", "stride", "padding", "rate")


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _flow(value) -> str:
    text = yaml.safe_dump(_plain(value), default_flow_style=True, sort_keys=False, width=10**9, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def layer_dict(graph: Graph, node: Node, previous: str) -> dict:
    """The canonical mapping of one layer."""
    out: dict = {"name": node.name, "type": node.type}
    if node.inputs != (previous,):
        out["inputs"] = node.inputs[0] if len(node.inputs) == 1 else list(node.inputs)
    spec_defaults = graph.defaults.get(node.type, {})
    fields = type(node.op).model_fields
    params = node.op.params()
    ordered = [f for f in _FIRST if f in fields] + [f for f in fields if f not in _FIRST]
    for field_name in ordered:
        info = fields[field_name]
        if field_name == "type":
            continue
        value = _plain(params[field_name])  # as plain data: a fused activation mapping is a dict
        if field_name in spec_defaults:
            implied = _plain(
                type(node.op)
                .model_validate({**_required(node), field_name: spec_defaults[field_name]})
                .params()[field_name]
            )
        elif info.is_required():
            implied = object()  # never equal: required fields are always written
        else:
            implied = _plain(info.default)
        if value != implied:
            out[field_name] = value
    return out


def _required(node: Node) -> dict:
    """The op's parameters, so that validating one changed field never fails for a missing one."""
    return {k: v for k, v in node.op.params().items()}


def to_dict(graph: Graph) -> dict:
    """The spec as plain data in canonical key order."""
    c, h, w = graph.input_shape
    data: dict = {"name": graph.name}
    if graph.description:
        data["description"] = graph.description
    data["input"] = {"channels": c, "size": h if h == w else [h, w]}
    if graph.classes is not None:
        data["classes"] = graph.classes
    if graph.labels is not None:
        data["labels"] = list(graph.labels)
    if graph.outputs:
        data["outputs"] = list(graph.outputs)
    if graph.defaults:
        data["defaults"] = _plain(graph.defaults)
    layers, previous = [], INPUT
    for node in graph.nodes:
        layers.append(layer_dict(graph, node, previous))
        previous = node.name
    data["layers"] = layers
    if graph.train is not None:
        data["train"] = _plain(graph.train)
    return data


def schema_modeline(text: str) -> str | None:
    """The `# yaml-language-server: $schema=...` line of a spec's text, if it has one."""
    for line in text.splitlines()[:5]:
        if line.startswith(SCHEMA_MODELINE):
            return line
    return None


def to_yaml(graph: Graph, modeline: str | None = None) -> str:
    """Canonical YAML text of a graph; `load_graph_text(to_yaml(g)) == g`.

    `modeline` (an editor's schema comment) is written first when given."""
    data = to_dict(graph)
    lines = [modeline] if modeline else []
    for key, value in data.items():
        if key == "layers":
            lines.append("layers:")
            lines.extend(f"  - {_flow(layer)}" for layer in value)
        elif key == "defaults":
            lines.append("defaults:")
            lines.extend(f"  {k}: {_flow(v)}" for k, v in value.items())
        elif key == "train":
            block = yaml.safe_dump({"train": value}, sort_keys=False, default_flow_style=False, allow_unicode=True)
            lines.append(block.rstrip())
        else:
            lines.append(f"{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def spec_hash(graph: Graph) -> str:
    """sha256 of the canonical YAML: equal for equal IRs, whatever file they came from."""
    import hashlib

    return hashlib.sha256(to_yaml(graph).encode("utf-8")).hexdigest()
