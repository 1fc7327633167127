"""The imported spec written the way a person would: `defaults` for the values most layers of
a type share, and `repeat` for runs of blocks that are the same but for a number in their
names. Both are only kept when the text loads back to exactly the imported layers (checked
here); otherwise the plain canonical YAML is written."""

from __future__ import annotations

import re
from collections import Counter

import yaml

from specc.emit import _flow, layer_dict, to_yaml
from specc.errors import SpecError
from specc.ir import INPUT, Graph
from specc.spec import load_graph_text

MIN_SHARE = 0.5  # a default is a value more than half the layers of the type have
MAX_BLOCK = 12  # layers in a repeated block
_NUMBER = re.compile(r"(\d+)")


def with_defaults(graph: Graph) -> Graph:
    """`graph` with `defaults:` for each value shared by most (and at least 3) layers of a type."""
    by_type: dict[str, list] = {}
    for node in graph.nodes:
        by_type.setdefault(node.type, []).append(node)
    defaults: dict[str, dict] = {}
    for kind, nodes in by_type.items():
        if len(nodes) < 3:
            continue
        fields = type(nodes[0].op).model_fields
        for name, info in fields.items():
            if name == "type":
                continue
            values = Counter(yaml.safe_dump(n.op.params()[name]) for n in nodes)
            text, count = values.most_common(1)[0]
            value = yaml.safe_load(text)
            if count / len(nodes) > MIN_SHARE and count >= 3 and (info.is_required() or value != info.default):
                defaults.setdefault(kind, {})[name] = value
    return graph.replace(defaults=defaults) if defaults else graph


def factored_yaml(graph: Graph) -> str:
    """The spec's text with defaults and repeats, when it loads back to the same layers; the
    canonical text otherwise."""
    plain = to_yaml(graph)
    for candidate in (with_defaults(graph), graph):
        text = _with_repeats(candidate)
        if _same_layers(text, graph):
            return text
        text = to_yaml(candidate)
        if _same_layers(text, graph):
            return text
    return plain


def _same_layers(text: str, graph: Graph) -> bool:
    try:
        loaded = load_graph_text(text, "factored")
    except SpecError:
        return False
    ours = [(n.name, n.op, n.inputs) for n in graph.nodes]
    return [(n.name, n.op, n.inputs) for n in loaded.nodes] == ours and loaded.outputs == graph.outputs


def _with_repeats(graph: Graph) -> str:
    """The canonical text with its `layers:` written with repeat blocks where they fit."""
    dicts, previous = [], INPUT
    for node in graph.nodes:
        dicts.append(layer_dict(graph, node, previous))
        previous = node.name
    lines, start = [], 0
    while start < len(dicts):
        found = _longest_repeat(dicts, start)
        if found is None:
            lines.append(f"  - {_flow(dicts[start])}")
            start += 1
            continue
        length, times, block, variables = found
        lines.append(f"  - repeat: {times}")
        if variables:
            lines.append("    vars:")
            lines.extend(f"      {name}: {_flow(values)}" for name, values in variables.items())
        lines.append("    layers:")
        lines.extend(f"      - {_flow(layer)}" for layer in block)
        start += length * times
    head = to_yaml(graph).split("\nlayers:\n", 1)[0]
    tail = to_yaml(graph).split("\ntrain:", 1)
    return head + "\nlayers:\n" + "\n".join(lines) + "\n" + (f"train:{tail[1]}" if len(tail) > 1 else "")


def _longest_repeat(dicts: list[dict], start: int):
    """(block length, times, templated block, vars) of the run at `start` covering the most
    layers (at least 4, at least 2 times), or None."""
    best = None
    for length in range(1, MAX_BLOCK + 1):
        times = 1
        while start + (times + 1) * length <= len(dicts):
            blocks = [dicts[start + k * length : start + (k + 1) * length] for k in range(times + 1)]
            if _template(blocks) is None:
                break
            times += 1
        if times >= 2 and length * times >= 4 and (best is None or length * times > best[0] * best[1]):
            blocks = [dicts[start + k * length : start + (k + 1) * length] for k in range(times)]
            block, variables = _template(blocks)  # type: ignore[misc]
            best = (length, times, block, variables)
    return best


def _template(blocks: list[list[dict]]):
    """The block with each varying number in its strings as `${vN}` and the vars' values, when
    every block is the first with other numbers in the same places; None otherwise."""
    sequences: dict[tuple, str] = {}
    template = []
    for j, layer in enumerate(blocks[0]):
        if any(set(b[j]) != set(layer) for b in blocks):
            return None
        out = {}
        for key, value in layer.items():
            values = [b[j][key] for b in blocks]
            if all(v == value for v in values):
                out[key] = value
                continue
            texts = values if all(isinstance(v, str) for v in values) else None
            templated = _templated_text(texts, sequences) if texts else None
            if templated is None:
                return None
            out[key] = templated
        template.append(out)
    variables = {name: list(seq) for seq, name in sequences.items()}
    return template, variables


def _templated_text(texts: list[str], sequences: dict[tuple, str]) -> str | None:
    """`layer1_0_conv1`, `layer1_1_conv1`, ... -> `layer1_${v1}_conv1` (one number differs)."""
    parts = [_NUMBER.split(t) for t in texts]
    if any(len(p) != len(parts[0]) for p in parts):
        return None
    differing = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    if len(differing) != 1 or differing[0] % 2 == 0:  # odd positions of the split are the numbers
        return None
    i = differing[0]
    seq = tuple(int(p[i]) for p in parts)
    if any(str(n) != p[i] for n, p in zip(seq, parts)):
        return None  # leading zeros would not come back
    name = sequences.setdefault(seq, f"v{len(sequences) + 1}")
    out = list(parts[0])
    out[i] = "${" + name + "}"
    return "".join(out)
