"""The top-level spec: header fields, `base:` inheritance, `--set` overrides, and loading
a spec file all the way to a validated, shape-checked `Graph`."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from specc import yamlsrc
from specc.errors import Diagnostic, DiagnosticSink, SourcePos, SpecError, UserError, did_you_mean
from specc.ir import INPUT, Graph, lint
from specc.layers import (
    Patch,
    _Positions,
    apply_patches,
    assign_names,
    build_nodes,
    check_defaults,
    check_references,
    expand,
)
from specc.ops import Pair, PosInt, _pair
from specc.validation import diagnostics_from

SCHEMA_URL = "https://specc.dev/schema/spec.json"
MAX_BASE_DEPTH = 16
TRAIN_KEY = "train"


class InputSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    channels: PosInt = Field(description="a positive integer (3 for RGB, 1 for grey)")
    size: Pair = Field(description="a positive integer or [height, width]")


class SpecHeader(BaseModel):
    """Everything of a spec but the layers' own parameters (those are checked per op)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
        description="an identifier (letters, digits, _ . -)",
    )
    description: str = Field("", description="free text")
    input: InputSpec = Field(description="{channels: C, size: S or [H, W]}")
    classes: PosInt | None = Field(
        None, description="a positive integer (number of classes; omit it for a network that is not a classifier)"
    )
    labels: list[str] | None = Field(None, description="a list of class names, one per class")
    outputs: list[str] | None = Field(
        None,
        min_length=1,
        description="a list of layer names: the network's outputs, in order (default: the last layer)",
    )
    defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="a mapping from layer type to default parameters"
    )
    layers: list[Any] = Field(description="a list of layers")
    train: dict[str, Any] | None = Field(None, description="the training recipe (see `specc train --help`)")
    base: str | None = Field(None, description="a path to the spec this one derives from")

    @field_validator("defaults", mode="before")
    @classmethod
    def _defaults_none(cls, value):
        return {} if value is None else value


HEADER_KEYS = list(SpecHeader.model_fields)


# -- raw documents, `base:` and `--set` ---------------------------------------------------
class RawSpec:
    """A spec document after `base:` merging: data plus where each value was written."""

    def __init__(self, data: dict, vpos: dict, kpos: dict, file: str, patches: list[Patch]):
        self.data, self.vpos, self.kpos, self.file, self.patches = data, vpos, kpos, file, patches

    def where(self) -> _Positions:
        return _Positions(self.vpos, self.kpos, SourcePos(self.file, 1, 1))


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _drop_under(positions: dict, prefix: tuple) -> dict:
    n = len(prefix)
    return {p: v for p, v in positions.items() if p[:n] != prefix}


def _layer_patches(data: dict, located: yamlsrc.Located) -> list[Patch]:
    out = []
    for layer, changes in data.items():
        if not isinstance(changes, dict):
            raise SpecError(
                Diagnostic(
                    located.pos(("layers", layer)), f"layers.{layer}", "expected a mapping of parameters to change"
                )
            )
        for key, value in changes.items():
            out.append(Patch(str(layer), key, value, located.pos(("layers", layer, key))))
    return out


def resolve(located: yamlsrc.Located, chain: tuple[str, ...] = ()) -> RawSpec:
    """Apply `base:` recursively: the derived file's values win; `defaults` and `train` merge
    key by key; a `layers:` list replaces the base's, a `layers:` mapping patches layers by name."""
    data = located.data
    if not isinstance(data, dict):
        raise SpecError(Diagnostic(located.pos(()), "", "a spec must be a YAML mapping (name:, input:, layers: ...)"))
    base_ref = data.get("base")
    if base_ref is None:
        patches = []
        if isinstance(data.get("layers"), dict):
            raise SpecError(
                Diagnostic(
                    located.pos(("layers",)), "layers", "a layers mapping patches a base spec — this spec has no base:"
                )
            )
        return RawSpec(dict(data), dict(located.positions), dict(located.key_positions), located.file, patches)
    if not isinstance(base_ref, str):
        raise SpecError(
            Diagnostic(located.pos(("base",)), "base", f"base = {base_ref!r} is not valid — expected a path")
        )
    here = Path(located.file).parent if located.file not in ("<stdin>",) else Path.cwd()
    base_path = (here / base_ref).resolve()
    if str(base_path) in chain:
        raise SpecError(
            Diagnostic(located.pos(("base",)), "base", f"base cycle: {' -> '.join(chain + (str(base_path),))}")
        )
    if len(chain) >= MAX_BASE_DEPTH:
        raise SpecError(Diagnostic(located.pos(("base",)), "base", f"more than {MAX_BASE_DEPTH} levels of base:"))
    if not base_path.is_file():
        if not base_path.exists():
            why = f"no such file '{base_ref}' (looked for {base_path})"
        elif base_path.is_dir():
            why = f"'{base_ref}' is a directory — expected a spec file"
        else:
            why = f"'{base_ref}' is a special file (device, FIFO or socket) — expected a spec file"
        raise SpecError(Diagnostic(located.pos(("base",)), "base", why))
    display = os.path.relpath(base_path) if not os.path.isabs(located.file) else str(base_path)
    text, _ = yamlsrc.read_source(base_path)
    base = resolve(yamlsrc.load_text(text, display), chain + (str(base_path),))
    merged, vpos, kpos = dict(base.data), dict(base.vpos), dict(base.kpos)
    patches = list(base.patches)
    for key, value in data.items():
        if key == "base":
            continue
        if key == "layers" and isinstance(value, dict):
            patches.extend(_layer_patches(value, located))
            continue
        if key in ("defaults", TRAIN_KEY) and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
            vpos, kpos = _drop_under(vpos, (key,)), _drop_under(kpos, (key,))
            if key == "layers":
                patches = []  # a new layer list makes the base's patches moot
    for path, pos in located.positions.items():
        if path and not (path[0] == "layers" and isinstance(data.get("layers"), dict)):
            vpos[path] = pos
    kpos.update(
        {p: v for p, v in located.key_positions.items() if p[0] != "layers" or isinstance(data.get("layers"), list)}
    )
    merged.pop("base", None)
    return RawSpec(merged, vpos, kpos, located.file, patches)


def apply_overrides(raw: RawSpec, overrides: list[str]) -> None:
    """`--set key.path=value` (value parsed as YAML); `layers.NAME.key=value` patches a layer."""
    for assignment in overrides or []:
        pos = SourcePos(f"--set {assignment}")
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {assignment}: expected KEY=VALUE, e.g. --set classes=100")
        try:
            value = yamlsrc.load_value(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise UserError(
                f"--set {assignment}: value is not valid YAML ({getattr(exc, 'problem', None) or exc})"
            ) from None
        parts = key.strip().split(".")
        if parts[0] == "layers" and len(parts) == 3 and not parts[1].isdigit():
            raw.patches.append(Patch(parts[1], parts[2], value, pos))
            continue
        target: Any = raw.data
        path: tuple = ()
        for part in parts[:-1]:
            step: Any = int(part) if part.isdigit() and isinstance(target, list) else part
            path += (step,)
            try:
                if isinstance(target, dict) and step not in target:
                    target[step] = {}
                target = target[step]
            except (IndexError, KeyError, TypeError):
                raise UserError(f"--set {assignment}: no such key path '{key}' in the spec") from None
        last: Any = int(parts[-1]) if parts[-1].isdigit() and isinstance(target, list) else parts[-1]
        try:
            target[last] = value
        except (IndexError, TypeError):
            raise UserError(f"--set {assignment}: no such key path '{key}' in the spec") from None
        full = path + (last,)
        raw.vpos = _drop_under(raw.vpos, full)
        raw.vpos[full] = pos
        raw.kpos[full] = pos


# -- loading all the way to a graph -------------------------------------------------------
def _header(raw: RawSpec, sink: DiagnosticSink) -> SpecHeader | None:
    where = raw.where()
    try:
        return SpecHeader.model_validate(raw.data)
    except ValidationError as exc:
        sink.diagnostics.extend(diagnostics_from(exc, SpecHeader, raw.data, where.value, where.key, "", "", "a spec"))
        return None


def graph_from_raw(raw: RawSpec) -> Graph:
    """Validate a merged document into a graph (structure only; shapes come later)."""
    sink = DiagnosticSink()
    where = raw.where()
    header = _header(raw, sink)
    layers_raw = raw.data.get("layers")
    defaults = raw.data.get("defaults") or {}
    if isinstance(defaults, dict):
        check_defaults(defaults, where, sink)
    entries = expand(layers_raw, ("layers",), where, sink) if isinstance(layers_raw, list) else []
    assign_names(entries)
    apply_patches(entries, raw.patches, sink)
    nodes = build_nodes(entries, defaults if isinstance(defaults, dict) else {}, where, sink)
    if isinstance(raw.data.get(TRAIN_KEY), dict):
        _check_train(raw, sink)
    if header is not None and header.labels is not None:
        _check_labels(header, where, sink)
    if header is not None and header.outputs is not None:
        check_outputs(header.outputs, entries, where, sink)
    if sink.errors:
        check_references(entries, sink)
        raise SpecError(sink.errors, partial=_partial(raw, header, nodes))
    assert header is not None  # any header problem was raised above
    return _graph(raw, header, nodes)


def _check_labels(header: SpecHeader, where: _Positions, sink: DiagnosticSink) -> None:
    """Labels name class scores: one per class, and only in a spec with classes."""
    count = len(header.labels or ())
    if header.classes is None:
        message = f"{count} labels but no classes — labels name class scores: add 'classes: {count}' (or remove labels)"
    elif count != header.classes:
        message = f"{count} labels for {header.classes} classes — expected one label per class"
    else:
        return
    sink.error(where.value(("labels",)), "labels", message)


def check_outputs(outputs: list[str], entries: list, where: _Positions, sink: DiagnosticSink) -> None:
    """Each name in `outputs:` is a layer of the spec, listed once."""
    names = {e.name for e in entries if isinstance(e.name, str)}
    first: dict[str, int] = {}
    for i, name in enumerate(outputs):
        pos, path = where.value(("outputs", i)), f"outputs[{i}]"
        if name == INPUT:
            sink.error(pos, path, f"'{INPUT}' is the network input — expected the name of a layer")
        elif name not in names:
            sink.error(pos, path, f"no layer named '{name}'{did_you_mean(name, names)}")
        elif name in first:
            sink.error(pos, path, f"'{name}' is listed twice (first as outputs[{first[name]}]) — list each layer once")
        first.setdefault(name, i)


def _check_train(raw: RawSpec, sink: DiagnosticSink) -> None:
    """The `train:` recipe is validated with the spec, so `specc check` locates its errors too."""
    from specc.train_schema import check_train  # built on first use: a spec without train: skips it

    where = raw.where()
    sink.diagnostics.extend(
        check_train(
            raw.data[TRAIN_KEY],
            lambda path: where.value((TRAIN_KEY, *path)),
            lambda path: where.key((TRAIN_KEY, *path)),
        )
    )


def _partial(raw: RawSpec, header: SpecHeader | None, nodes: list) -> Graph | None:
    """The validated part of a spec with errors, for shape checking what can be checked."""
    if header is None:
        return None
    names = {n.name for n in nodes}
    if header.outputs and not all(name in names for name in header.outputs):
        header = header.model_copy(update={"outputs": None})  # shapes can be checked without them
    return _graph(raw, header, nodes, check=False)


def _graph(raw: RawSpec, header: SpecHeader, nodes: list, check: bool = True) -> Graph:
    where = raw.where()
    size = _pair(header.input.size)
    header_pos = tuple((k, where.key((k,))) for k in raw.data if isinstance(k, str))
    graph = Graph(
        name=header.name,
        input_shape=(header.input.channels, size[0], size[1]),
        classes=header.classes,
        nodes=tuple(nodes),
        description=header.description,
        labels=tuple(header.labels) if header.labels is not None else None,
        outputs=tuple(header.outputs or ()),
        defaults={k: dict(v) for k, v in header.defaults.items()},
        train=copy.deepcopy(header.train),
        source=raw.file,
        header_pos=header_pos,
    )
    if check:
        problems = lint(graph)
        if problems:
            raise SpecError(problems)
    return graph


def load_raw(source: str | Path, overrides: list[str] | None = None) -> RawSpec:
    located = yamlsrc.load(source)
    raw = resolve(located)
    apply_overrides(raw, overrides or [])
    return raw


def load_graph(source: str | Path, overrides: list[str] | None = None) -> Graph:
    """Load a spec file (or `-`) into a structurally valid graph (no shape check)."""
    return graph_from_raw(load_raw(source, overrides))


def load_graph_text(text: str, file: str = "<string>", overrides: list[str] | None = None) -> Graph:
    raw = resolve(yamlsrc.load_text(text, file))
    apply_overrides(raw, overrides or [])
    return graph_from_raw(raw)
