"""Safe YAML loading that remembers where every value came from.

Only plain YAML is accepted (the SafeLoader's tags: no python objects), the file size is
bounded, and alias expansion is bounded so that a "billion laughs" document is refused
instead of exhausting memory. Every mapping value and sequence item gets a `SourcePos`,
keyed by its key path (a tuple such as `("layers", 5, "kernel")`), so that validation errors
can point at the exact node.
"""

from __future__ import annotations

import math
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.composer import ComposerError

from specc.errors import Diagnostic, SourcePos, SpecError, UserError

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64  # nesting of mappings and lists; a spec needs a handful

# Scalar tags a spec may hold. A timestamp (`2024-01-01`) is read as the text it is; any
# other tag (`!!binary`, `!!python/...`, custom `!tags`) is refused.
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str")}
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp"}

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


class _DepthLimitedLoader(yaml.SafeLoader):
    """PyYAML composes nested nodes recursively: refuse deep nesting before Python's stack
    runs out (a RecursionError), at the node that goes too deep."""

    depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                event = self.peek_event()
                raise ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels exceeds the limit", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# Floats as YAML 1.2 and JSON write them. PyYAML follows YAML 1.1, where a float needs a dot
# and a signed exponent, so `lr: 1e-3` (and `--lr 1e-5`, which reaches the spec as JSON text)
# would be the *string* '1e-3' and refused as "not a number".
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_DepthLimitedLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def load_value(text: str) -> object:
    """One YAML value (a `--set` value) read as spec files are: `1e-5` is a number."""
    return yaml.load(text, Loader=_DepthLimitedLoader)  # noqa: S506 - a SafeLoader subclass


def _reader_error(file: str, text: str, exc: yaml.reader.ReaderError) -> SpecError:
    """A located error for a character YAML does not allow (NUL and other control bytes)."""
    before = text[: max(exc.position, 0)]
    line = before.count("\n") + 1
    col = len(before) - (before.rfind("\n") + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
    return SpecError(
        Diagnostic(
            SourcePos(file, line, col),
            "",
            f"YAML: control character U+{code:04X} is not allowed — expected printable text",
        )
    )


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
        assert isinstance(node, yaml.ScalarNode), "PyYAML composes scalar, sequence and mapping nodes only"
        return self._scalar(node, path)

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath) -> object:
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise SpecError(
                Diagnostic(
                    _mark(self.file, node.start_mark),
                    _format_path(path),
                    f"YAML: tag not allowed (plain YAML only): '{node.tag}'",
                )
            )
        value = self.loader.construct_object(node)
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(
                Diagnostic(
                    _mark(self.file, node.start_mark),
                    _format_path(path),
                    f"{node.value} is not a finite number — expected a number (quote it for text)",
                )
            )
        return value


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
    try:
        loader = _DepthLimitedLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(file, text, exc) from None
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
        quoted = _unquoted_variable(text, exc.problem_mark)
        if quoted:
            back, message = quoted  # point at the value, not at the '{' inside it
            raise SpecError(Diagnostic(SourcePos(pos.file, pos.line, pos.col - back), "", message)) from None
        if "could not determine a constructor" in str(problem):
            problem = problem.replace(
                "could not determine a constructor for the tag", "tag not allowed (plain YAML only):"
            )
        raise SpecError(Diagnostic(pos, "", f"YAML: {problem}")) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(file, text, exc) from None
    except yaml.YAMLError as exc:
        raise SpecError(Diagnostic(SourcePos(file, 1, 1), "", f"YAML: {exc}")) from None
    finally:
        loader.dispose()
    return Located(data, file, builder.positions, builder.key_positions, text)


def _unquoted_variable(text: str, mark) -> tuple[int, str] | None:
    """The error for `{name: s${i}_conv}`: in a flow mapping or list YAML reads the `{` of
    `${i}` as a nested mapping and fails there; say to quote the value."""
    index = getattr(mark, "index", -1)
    if not 0 < index < len(text) or text[index] != "{" or text[index - 1] != "$":
        return None
    start = index - 1
    while start > 0 and text[start - 1] not in ",{[ \t\n":
        start -= 1
    end = text.find("}", index) + 1
    while 0 < end < len(text) and text[end] not in ",}] \t\n":
        end += 1
    value = text[start:end] if end > 0 else text[start : index + 1]
    return index - start, (
        f"YAML: {value} must be quoted inside {{...}} or [...] — YAML reads the '{{' of '${{' as the start"
        f' of a mapping; write "{value}"'
    )


def read_source(source: str | Path) -> tuple[str, str]:
    """Read a spec's text from a path or from stdin (`-`); returns (text, display name)."""
    if str(source) == "-":
        data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        name = "<stdin>"
    else:
        path = Path(source)
        name = str(source)
        data = read_regular_file(path, MAX_FILE_BYTES + 1, "a YAML spec file")
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{name}: spec is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB — refusing")
    try:
        return data.decode("utf-8"), name
    except UnicodeDecodeError as exc:
        raise UserError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def read_regular_file(path: Path, limit: int, what: str) -> bytes:
    """At most `limit` bytes of a regular file; a one-line UserError for a missing file, a
    directory or a special file (a FIFO would block, /dev/zero never end)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: is a directory, expected {what}")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: is a special file (device, FIFO or socket), expected {what}")
    try:
        with path.open("rb") as f:
            return f.read(limit)
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from None


def load(source: str | Path) -> Located:
    """Load a spec file (or `-` for stdin) with positions."""
    text, name = read_source(source)
    return load_text(text, name)
