"""`specc fmt`'s text: the canonical form of a spec (`specc.emit`), with the comments and
the key order of the file it came from kept.

The canonical form writes every layer afresh (named, defaults dropped, repeats expanded,
`base:` resolved), so no YAML round-trip of the source tree could be dumped as it is.
Instead each line of the output has an *anchor* (a top-level key, a `train:`/`defaults:`
entry, a layer by name), each line of the source is mapped to the anchor of what it writes
(from the loader's positions: a layer's lines are those of its mapping and parameters), and
every comment goes with the anchor it belongs to:

- a comment on its own line goes before the next source line that has an anchor in the
  output (a comment above `base:` or above `- repeat:` goes to the next key or layer), at
  that line's indentation; a blank line right before it is kept;
- an end-of-line comment stays at the end of its layer's or key's line; when several end
  on one output line (a block-style layer), they go above it, in order;
- a layer written once inside a `repeat:` has its comments on its first copy only;
- comments of a `base:` file stay in that file: the derived file's own comments are kept.

Comments are found with PyYAML's scanner (a `#` outside every token), the same parser that
loads specs, so a `#` inside a quoted or block string is never taken for one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import yaml

from specc.emit import _flow, schema_modeline, to_dict
from specc.ir import Graph
from specc.yamlsrc import Located, load_text

Anchor = tuple[str, str]  # ("top", key), ("train", key), ("defaults", type), ("layer", name)


@dataclass(frozen=True)
class Comment:
    """One comment of the source: its 1-based line, its text from `#`, whether code precedes it."""

    line: int
    text: str
    end_of_line: bool
    blank_before: bool


def find_comments(text: str) -> list[Comment]:
    """Every comment of a YAML text, in order (the text must scan as YAML)."""
    spans = [(t.start_mark.index, t.end_mark.index) for t in yaml.scan(text) if t.end_mark.index > t.start_mark.index]
    spans.sort()
    starts = [s for s, _ in spans]
    lines = text.splitlines()
    found, offset = [], 0
    for number, line in enumerate(lines, start=1):
        col = line.find("#")
        while col >= 0:
            i = bisect.bisect_right(starts, offset + col) - 1
            inside = i >= 0 and spans[i][0] <= offset + col < spans[i][1]
            if not inside and (col == 0 or line[col - 1] in " \t"):
                blank = number > 1 and not lines[number - 2].strip()
                found.append(Comment(number, line[col:].rstrip(), bool(line[:col].strip()), blank))
                break
            col = line.find("#", col + 1)
        offset += len(line) + _newline_length(text, offset + len(line))
    return found


def _newline_length(text: str, index: int) -> int:
    return 2 if text.startswith("\r\n", index) else (1 if index < len(text) else 0)


def merge_order(canonical: list[str], source: list[str]) -> list[str]:
    """The canonical keys, in the source's order where the source has them; a key the source
    lacks goes right after the key that precedes it in canonical order (first if none)."""
    out = [k for k in source if k in canonical]
    for i, key in enumerate(canonical):
        if key in out:
            continue
        before = next((k for k in reversed(canonical[:i]) if k in out), None)
        out.insert(out.index(before) + 1 if before is not None else 0, key)
    return out


def _reorder(value, source):
    """`value` (canonical data) with its mappings' keys in `source`'s order, recursively."""
    if not (isinstance(value, dict) and isinstance(source, dict)):
        return value
    return {k: _reorder(value[k], source.get(k)) for k in merge_order(list(value), list(source))}


def _source_layers(data, path: tuple = ("layers",)) -> dict:
    """Each layer mapping of a source: (line, col) or name -> its keys in written order."""
    layers = data.get(path[-1]) if isinstance(data, dict) else None
    out: dict = {}
    if isinstance(layers, dict):  # a derived spec patching its base's layers by name
        out.update({name: list(v) for name, v in layers.items() if isinstance(v, dict)})
    for i, entry in enumerate(layers if isinstance(layers, list) else []):
        if isinstance(entry, dict) and "repeat" in entry:
            out.update(_source_layers(entry, path + (i, "layers")))
        elif isinstance(entry, dict):
            out[path + (i,)] = list(entry)
    return out


def _lines(graph: Graph, located: Located, modeline: str | None) -> list[tuple[Anchor | None, str]]:
    """The canonical text as (anchor, line) pairs, keys in the source's order."""
    source = located.data if isinstance(located.data, dict) else {}
    data = _reorder(to_dict(graph), source)
    by_key = _source_layers(source)
    by_pos = {located.positions.get(k): keys for k, keys in by_key.items() if isinstance(k, tuple)}
    out: list[tuple[Anchor | None, str]] = [(None, modeline)] if modeline else []
    for key, value in data.items():
        if key == "layers":
            out.append((("top", "layers"), "layers:"))
            for node, layer in zip(graph.nodes, value):
                keys = _layer_keys(node, located, by_key, by_pos)
                out.append((("layer", node.name), f"  - {_flow(_reorder(layer, dict.fromkeys(keys)))}"))
        elif key == "defaults":
            out.append((("top", key), "defaults:"))
            out.extend((("defaults", k), f"  {k}: {_flow(v)}") for k, v in value.items())
        elif key == "train":
            out.append((("top", key), "train:"))
            block = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True)
            anchor: Anchor | None = None
            for line in block.rstrip().splitlines():
                if not line.startswith((" ", "-")):
                    anchor = ("train", line.split(":", 1)[0])
                    out.append((anchor, f"  {line}"))
                else:
                    out.append((None, f"  {line}"))
        else:
            out.append((("top", key), f"{key}: {_flow(value)}"))
    return out


def _layer_keys(node, located: Located, by_key: dict, by_pos: dict) -> list[str]:
    """The keys of the source mapping a layer came from, in written order ([] if none)."""
    if node.name in by_key:
        return by_key[node.name]
    return by_pos.get(node.pos, []) if node.pos.file == located.file else []


def _source_anchors(graph: Graph, located: Located) -> dict[int, Anchor]:
    """Source line -> the anchor of what that line writes (the outermost thing on it)."""
    anchors: dict[int, Anchor] = {}
    names = {node.name for node in graph.nodes}
    # A collection's value position is its first child's line: only keys and scalars count.
    parents = {tuple(p[:i]) for p in located.positions for i in range(len(p))}
    values = {p: pos for p, pos in located.positions.items() if tuple(p) not in parents}
    for table in (located.key_positions, values):
        for key_path, pos in sorted(table.items(), key=lambda item: len(item[0])):
            path: tuple[str | int, ...] = tuple(key_path)
            if not path or pos.file != located.file:
                continue
            head = str(path[0])
            if head == "layers":
                if len(path) == 1:
                    anchors.setdefault(pos.line, ("top", "layers"))
                elif len(path) == 2 and path[1] in names:  # a base's layer patched by name
                    anchors.setdefault(pos.line, ("layer", str(path[1])))
            elif head in ("train", "defaults") and len(path) >= 2:
                anchors.setdefault(pos.line, (head, str(path[1])))
            else:
                anchors.setdefault(pos.line, ("top", head))
    for node in graph.nodes:  # the first copy of a repeated layer is the one that wins
        if node.pos.file == located.file:
            anchors.setdefault(node.pos.line, ("layer", node.name))
    for node in graph.nodes:
        for _, pos in node.field_pos:
            if pos.file == located.file:
                anchors.setdefault(pos.line, ("layer", node.name))
    return anchors


def format_with_comments(graph: Graph, text: str, file: str) -> str:
    """The canonical YAML of `graph`, which was loaded from `text` (named `file`), with the
    comments and key order of `text` kept (see the module docstring for where they go)."""
    located = load_text(text, file)
    modeline = schema_modeline(text)
    lines = _lines(graph, located, modeline)
    present = {anchor for anchor, _ in lines if anchor}
    anchors = _source_anchors(graph, located)
    targets = sorted((line, a) for line, a in anchors.items() if a in present)
    before: dict[Anchor | None, list[Comment]] = {}
    after: dict[Anchor, list[Comment]] = {}
    for comment in find_comments(text):
        if modeline and comment.text == modeline.rstrip():
            continue
        own = anchors.get(comment.line)
        if comment.end_of_line and own in present:
            after.setdefault(own, []).append(comment)  # type: ignore[arg-type]
            continue
        later = next((a for line, a in targets if line > comment.line), None)
        before.setdefault(later, []).append(comment)
    return _render(lines, before, after)


def _render(lines, before: dict, after: dict) -> str:
    out: list[str] = []

    def block(comments: list[Comment], indent: str) -> None:
        for c in comments:
            if c.blank_before and out and out[-1] != "":
                out.append("")
            out.append(indent + c.text)

    for anchor, line in lines:
        indent = line[: len(line) - len(line.lstrip())]
        ends = after.get(anchor, []) if anchor else []
        own = before.get(anchor, []) if anchor else []
        if len(ends) > 1:  # several end-of-line comments of one output line: above it, in order
            own = sorted(own + [Comment(c.line, c.text, False, False) for c in ends], key=lambda c: c.line)
            ends = []
        block(own, indent)
        out.append(f"{line}  {ends[0].text}" if ends else line)
    block(before.get(None, []), "")
    return "\n".join(out) + "\n"
