"""From the `layers:` list of a spec to validated IR nodes.

Steps, each reporting every problem it finds (located) rather than stopping at the first:
expand `repeat` blocks (with `${i}` and per-iteration `vars`), name unnamed layers (conv1,
conv2, pool1, ...), apply name-addressed patches from derived specs and `--set`, apply the
spec's `defaults`, and validate each layer against its op class in `specc.ops`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from specc.errors import DiagnosticSink, SourcePos, did_you_mean
from specc.ir import INPUT, Node
from specc.ops import OPS
from specc.type_names import unknown_type_message
from specc.validation import diagnostics_from
from specc.yamlsrc import format_path

ENTRY_KEYS = ("name", "type", "inputs")
REPEAT_KEYS = ("repeat", "vars", "layers")
MAX_EXPANDED = 10_000
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class Entry:
    """One layer after `repeat` expansion, before validation."""

    name: str | None
    type: Any
    params: dict
    inputs: Any
    pos: SourcePos
    path: str
    value_pos: dict[str, SourcePos] = field(default_factory=dict)
    key_pos: dict[str, SourcePos] = field(default_factory=dict)


@dataclass(frozen=True)
class Patch:
    """`layers: {conv9: {filters: 100}}` in a derived spec, or `--set layers.conv9.filters=100`."""

    layer: str
    key: str
    value: Any
    pos: SourcePos


class _Positions:
    def __init__(self, vpos: dict, kpos: dict, fallback: SourcePos):
        self.vpos, self.kpos, self.fallback = vpos, kpos, fallback

    def value(self, path: tuple) -> SourcePos:
        path = tuple(path)
        while path:
            if path in self.vpos:
                return self.vpos[path]
            path = path[:-1]
        return self.fallback

    def key(self, path: tuple) -> SourcePos:
        return self.kpos.get(tuple(path)) or self.value(path)


def _substitute(value, env: dict, pos: SourcePos, path: str, sink: DiagnosticSink):
    """`${name}` (or `$name`) -> the variable's value: the value itself where it is the whole
    string (`filters: $filters` stays an int), else its text (`name: s${i}_conv`)."""
    if isinstance(value, dict):
        return {k: _substitute(v, env, pos, path, sink) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, pos, path, sink) for v in value]
    if not isinstance(value, str) or "$" not in value or not env:
        return value
    whole = _VAR.fullmatch(value)
    if whole:
        var = whole.group(1) or whole.group(2)
        if var in env:
            return env[var]

    def repl(match: re.Match) -> str:
        var = match.group(1) or match.group(2)
        if var not in env:
            sink.error(pos, path, _unknown_variable(var, match.group(2) is not None, env))
            return match.group(0)
        return str(env[var])

    return _VAR.sub(repl, value)


def _unknown_variable(var: str, bare: bool, env: dict) -> str:
    """The error for `$var`; a bare `$i_conv` probably meant `${i}_conv`."""
    known = f"known: {', '.join('${' + k + '}' for k in env)}"
    prefixes = [k for k in env if bare and var.startswith(k)]
    if prefixes:
        k = max(prefixes, key=len)
        return (
            f"unknown variable ${var} — did you mean '${{{k}}}{var[len(k) :]}'? (a bare $name runs to the"
            f" first character that is not a letter, digit or _; {known})"
        )
    close = did_you_mean(var, env)  # " — did you mean 'rate'?"
    if close:
        name = close.split("'")[1]
        return f"unknown variable ${var} — did you mean '${{{name}}}'? ({known})"
    return f"unknown variable ${var} ({known})"


def _nested_pos(layer: dict, kp: tuple, position) -> dict[str, SourcePos]:
    """Positions inside mapping-valued parameters (`activation: {type: elu, alpha: x}`), keyed
    `activation.alpha`, so that an error in such a mapping points at its key or value."""
    return {f"{k}.{sub}": position(kp + (k, sub)) for k, v in layer.items() if isinstance(v, dict) for sub in v}


def _at(positions: dict[str, SourcePos], loc: tuple, fallback: SourcePos) -> SourcePos:
    """The position of a validation error's loc: the nested key if known, else the parameter."""
    if not loc:
        return fallback
    return positions.get(".".join(map(str, loc)), positions.get(loc[0], fallback))


def expand(items, keypath: tuple, where: _Positions, sink: DiagnosticSink, env: dict | None = None) -> list[Entry]:
    """Flatten `repeat` blocks into a list of entries (substituting `$var`s)."""
    env = env or {}
    out: list[Entry] = []
    if not isinstance(items, list):
        sink.error(where.value(keypath), format_path(keypath), "expected a list of layers")
        return out
    for i, item in enumerate(items):
        kp = keypath + (i,)
        path = format_path(kp)
        pos = where.value(kp)
        if not isinstance(item, dict):
            sink.error(
                pos, path, f"expected a layer mapping such as {{type: conv, filters: 96, kernel: 3}}, got {item!r}"
            )
            continue
        if "repeat" in item:
            out.extend(_expand_repeat(item, kp, where, sink, env))
        else:
            layer: dict[str, Any] = {
                k: _substitute(v, env, where.value(kp + (k,)), path, sink) for k, v in item.items()
            }
            params = {k: v for k, v in layer.items() if k not in ENTRY_KEYS}
            out.append(
                Entry(
                    name=layer.get("name"),
                    type=layer.get("type"),
                    params=params,
                    inputs=layer.get("inputs"),
                    pos=pos,
                    path=path,
                    value_pos={k: where.value(kp + (k,)) for k in layer} | _nested_pos(layer, kp, where.value),
                    key_pos={k: where.key(kp + (k,)) for k in layer} | _nested_pos(layer, kp, where.key),
                )
            )
        if len(out) > MAX_EXPANDED:
            sink.error(pos, path, f"{len(out):,} layers after repeat expansion exceed the limit of {MAX_EXPANDED:,}")
            return out
    return out


def _expand_repeat(item: dict, kp: tuple, where: _Positions, sink: DiagnosticSink, env: dict) -> list[Entry]:
    path = format_path(kp)
    for key in item:
        if key not in REPEAT_KEYS:
            sink.error(
                where.key(kp + (key,)), path, f"unknown key '{key}' in a repeat block{did_you_mean(key, REPEAT_KEYS)}"
            )
    times = _substitute(item["repeat"], env, where.value(kp), path, sink)
    if not isinstance(times, int) or isinstance(times, bool) or times < 1:
        sink.error(
            where.value(kp + ("repeat",)), path, f"repeat = {times!r} is not valid — expected a positive integer"
        )
        return []
    if times > MAX_EXPANDED:
        sink.error(where.value(kp + ("repeat",)), path, f"repeat: {times:,} exceeds the limit of {MAX_EXPANDED:,}")
        return []
    # Refuse a bomb from the counts, before expanding anything (1000 x 1000 would build a
    # million entries first).
    inner = _count_layers(item.get("layers"), env)
    if times * inner > MAX_EXPANDED:
        sink.error(
            where.value(kp + ("repeat",)),
            path,
            f"repeat: {times:,} x {inner:,} layers = {times * inner:,} exceeds the limit of {MAX_EXPANDED:,} layers",
        )
        return []
    variables = item.get("vars") or {}
    if not isinstance(variables, dict):
        sink.error(where.value(kp + ("vars",)), path, "vars must map names to lists of per-iteration values")
        return []
    for var, values in variables.items():
        if not isinstance(values, list) or len(values) != times:
            got = len(values) if isinstance(values, list) else type(values).__name__
            sink.error(
                where.value(kp + ("vars", var)),
                f"{path}.vars.{var}",
                f"expected a list of {times} values (one per repetition), got {got}",
            )
            return []
    if "layers" not in item:
        sink.error(where.value(kp), path, "a repeat block needs a 'layers' list")
        return []
    out: list[Entry] = []
    for it in range(times):
        scope = {**env, "i": it + 1, **{k: v[it] for k, v in variables.items()}}
        out.extend(expand(item["layers"], kp + ("layers",), where, sink, scope))
    return out


def _count_layers(items, env: dict) -> int:
    """How many layers `items` expand to, from the repeat counts alone (a count that is not a
    literal or a known variable counts once: its own error comes when it is expanded)."""
    if not isinstance(items, list):
        return 0
    total = 0
    for item in items:
        if isinstance(item, dict) and "repeat" in item:
            times = item["repeat"]
            if isinstance(times, str) and times.startswith("$"):
                times = env.get(times.strip("${}"), 1)
            times = times if isinstance(times, int) and not isinstance(times, bool) and times > 0 else 1
            total += times * _count_layers(item.get("layers"), env)
        else:
            total += 1
        if total > MAX_EXPANDED:  # enough to refuse; stop before the numbers grow huge
            return total
    return total


def assign_names(entries: list[Entry]) -> None:
    """Give unnamed layers stable names: the type's prefix and a per-prefix counter."""
    taken = {e.name for e in entries if isinstance(e.name, str)}
    counters: dict[str, int] = {}
    for e in entries:
        if e.name is not None:
            continue
        cls = OPS.get(e.type) if isinstance(e.type, str) else None
        prefix = cls.name_prefix if cls else "layer"
        n = counters.get(prefix, 0) + 1
        while f"{prefix}{n}" in taken:
            n += 1
        counters[prefix] = n
        e.name = f"{prefix}{n}"
        taken.add(e.name)


def apply_patches(entries: list[Entry], patches: list[Patch], sink: DiagnosticSink) -> None:
    by_name = {e.name: e for e in entries if isinstance(e.name, str)}
    for p in patches:
        entry = by_name.get(p.layer)
        if entry is None:
            sink.error(p.pos, f"layers.{p.layer}", f"no layer named '{p.layer}'{did_you_mean(p.layer, by_name)}")
            continue
        if p.key in ENTRY_KEYS:
            setattr(entry, p.key, p.value)
        else:
            entry.params[p.key] = p.value
        entry.value_pos[p.key] = p.pos
        entry.key_pos[p.key] = p.pos


def check_defaults(defaults: dict, where: _Positions, sink: DiagnosticSink) -> None:
    """Defaults name real layer types and real parameters of those types."""
    for op_type, values in defaults.items():
        kp = ("defaults", op_type)
        if op_type not in OPS:
            sink.error(where.key(kp), "defaults", unknown_type_message(op_type))
            continue
        if not isinstance(values, dict):
            sink.error(where.value(kp), f"defaults.{op_type}", "expected a mapping of parameters")
            continue
        fields = [f for f in OPS[op_type].model_fields if f != "type"]
        for key in values:
            if key not in fields:
                sink.error(
                    where.key(kp + (key,)),
                    f"defaults.{op_type}",
                    f"unknown key '{key}' for {op_type}{did_you_mean(key, fields)}",
                )


def build_nodes(entries: list[Entry], defaults: dict, where: _Positions, sink: DiagnosticSink) -> list[Node]:
    """Validate every entry against its op class; returns the nodes that validated."""
    nodes: list[Node] = []
    previous = INPUT
    for e in entries:
        label = e.name if isinstance(e.name, str) else ""
        inputs = _inputs(e, previous, sink)
        previous = e.name if isinstance(e.name, str) else previous
        if e.type is None:
            sink.error(e.pos, e.path, f"missing 'type' — expected one of {', '.join(OPS)}", label)
            continue
        if not isinstance(e.type, str) or e.type not in OPS:
            sink.error(
                e.value_pos.get("type", e.pos),
                e.path,
                unknown_type_message(e.type),
                label,
            )
            continue
        if not isinstance(e.name, str):
            sink.error(e.value_pos.get("name", e.pos), e.path, f"name = {e.name!r} is not valid — expected a string")
            continue
        cls = OPS[e.type]
        layer_defaults = defaults.get(e.type, {}) if isinstance(defaults.get(e.type), dict) else {}
        merged = {**{k: v for k, v in layer_defaults.items() if k in cls.model_fields}, **e.params}
        vpos = {k: where.value(("defaults", e.type, k)) for k in layer_defaults} | e.value_pos
        kpos = e.key_pos
        try:
            op = cls.model_validate(merged)
        except ValidationError as exc:
            sink.diagnostics.extend(
                diagnostics_from(
                    exc,
                    cls,
                    merged,
                    lambda loc, vpos=vpos, e=e: _at(vpos, loc, e.pos),
                    lambda loc, kpos=kpos, e=e: _at(kpos, loc, e.pos),
                    e.path,
                    label,
                    e.type,
                )
            )
            continue
        if inputs is None:
            continue
        field_pos = tuple(sorted(vpos.items())) + (("name", e.value_pos.get("name", e.pos)),)
        nodes.append(Node(e.name, op, inputs, e.pos, e.path, field_pos))
    return nodes


def check_references(entries: list[Entry], sink: DiagnosticSink) -> None:
    """Every named input exists somewhere in the spec (valid or not)."""
    names = {e.name for e in entries if isinstance(e.name, str)} | {INPUT}
    for e in entries:
        raw = [e.inputs] if isinstance(e.inputs, str) else e.inputs
        for src in raw if isinstance(raw, list) else []:
            if isinstance(src, str) and src not in names:
                sink.error(
                    e.value_pos.get("inputs", e.pos),
                    e.path,
                    f"unknown input '{src}'{did_you_mean(src, names - {e.name} if isinstance(e.name, str) else names)}",
                    e.name if isinstance(e.name, str) else "",
                )


def _inputs(e: Entry, previous: str, sink: DiagnosticSink) -> tuple[str, ...] | None:
    if e.inputs is None:
        return (previous,)
    raw = [e.inputs] if isinstance(e.inputs, str) else e.inputs
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        sink.error(
            e.value_pos.get("inputs", e.pos),
            e.path,
            f"inputs = {e.inputs!r} is not valid — expected a layer name or a list of layer names",
            e.name if isinstance(e.name, str) else "",
        )
        return None
    return tuple(raw)
