"""Safe YAML loading that remembers where every value came from.

Only plain YAML is accepted (the SafeLoader's tags: no python objects), the file size is
bounded, and alias expansion is bounded so that a "billion laughs" document is refused
instead of exhausting memory. Every mapping value and sequence item gets a `SourcePos`,
keyed by its key path (a tuple such as `("layers", 5, "kernel")`), so that validation errors
can point at the exact node.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from specc.errors import Diagnostic, SourcePos, SpecError, UserError

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000

KeyPath = tuple  # tuple[str | int, ...]
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass
class Located:
    """A loaded document and the position of each of its nodes."""

    data: object
    file: str
    positions: dict[KeyPath, SourcePos] = field(default_factory=dict)
    key_positions: dict[KeyPath, SourcePos] = field(default_factory=dict)
    text: str = ""

    def pos(self, path: KeyPath) -> SourcePos:
        """Position of the node at `path`, or of its nearest located ancestor."""
        path = tuple(path)
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), SourcePos(self.file, 1, 1))

    def key_pos(self, path: KeyPath) -> SourcePos:
        """Position of the key that introduced `path` (falls back to the value)."""
        return self.key_positions.get(tuple(path)) or self.pos(path)


def _mark(file: str, mark) -> SourcePos:
    return SourcePos(file, mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.count = 0
        self.positions: dict[KeyPath, SourcePos] = {}
        self.key_positions: dict[KeyPath, SourcePos] = {}

    def build(self, node: yaml.Node, path: KeyPath) -> object:
        self.count += 1
        if self.count > MAX_NODES:
            raise SpecError(
                Diagnostic(
                    _mark(self.file, node.start_mark),
                    "",
                    f"document expands to more than {MAX_NODES} nodes (alias bomb?) — refusing",
                )
            )
        self.positions.setdefault(path, _mark(self.file, node.start_mark))
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            # Scalars go through the SafeLoader, which refuses unknown tags; collections we
            # build ourselves, so refuse their tags here rather than silently dropping them.
            raise SpecError(
                Diagnostic(
                    _mark(self.file, node.start_mark), "", f"YAML: tag not allowed (plain YAML only): '{node.tag}'"
                )
            )
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves `<<` merge keys
            result: dict = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise SpecError(
                        Diagnostic(_mark(self.file, key_node.start_mark), "", "mapping keys must be plain scalars")
                    )
                key = self.loader.construct_object(key_node)
                if key in result:
                    raise SpecError(
                        Diagnostic(
                            _mark(self.file, key_node.start_mark),
                            _format_path(path + (key,)),
                            f"duplicate key '{key}'",
                        )
                    )
                self.key_positions[path + (key,)] = _mark(self.file, key_node.start_mark)
                result[key] = self.build(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node)


def _format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


format_path = _format_path


def load_text(text: str, file: str) -> Located:
    """Parse YAML text; errors become a located `SpecError`."""
    if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise UserError(f"{file}: spec is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB — refusing")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Located({}, file, {(): SourcePos(file, 1, 1)}, {}, text)
        builder = _Builder(loader, file)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = _mark(file, mark) if mark else SourcePos(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in str(problem):
            problem = problem.replace(
                "could not determine a constructor for the tag", "tag not allowed (plain YAML only):"
            )
        raise SpecError(Diagnostic(pos, "", f"YAML: {problem}")) from None
    except yaml.YAMLError as exc:
        raise SpecError(Diagnostic(SourcePos(file, 1, 1), "", f"YAML: {exc}")) from None
    finally:
        loader.dispose()
    return Located(data, file, builder.positions, builder.key_positions, text)


def read_source(source: str | Path) -> tuple[str, str]:
    """Read a spec's text from a path or from stdin (`-`); returns (text, display name)."""
    if str(source) == "-":
        data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        name = "<stdin>"
    else:
        path = Path(source)
        name = str(source)
        if not path.exists():
            raise UserError(f"{name}: no such file")
        if path.is_dir():
            raise UserError(f"{name}: is a directory, expected a YAML spec file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{name}: spec is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB — refusing")
        data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{name}: spec is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB — refusing")
    try:
        return data.decode("utf-8"), name
    except UnicodeDecodeError as exc:
        raise UserError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def load(source: str | Path) -> Located:
    """Load a spec file (or `-` for stdin) with positions."""
    text, name = read_source(source)
    return load_text(text, name)
