"""`specc fmt`: canonical form with the file's comments and key order kept; --check, --in-place."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from specc.cli import main
from specc.spec import load_graph, load_graph_text

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted([*ROOT.glob("specs/*.yaml"), *ROOT.glob("specs/zoo/*.yaml")])


def naive_comments(text: str) -> Counter:
    """The comments of a spec that has no '#' inside a string (true of every spec in specs/):
    '#' at a line's start or after a blank, to the end of the line."""
    found = Counter()
    for line in text.splitlines():
        match = re.search(r"(^|\s)(#.*)$", line)
        if match:
            found[match.group(2).rstrip()] += 1
    return found


def fmt(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["fmt", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_formats_to_the_same_graph_with_every_comment(capsys, path):
    code, out, _ = fmt(capsys, str(path))
    assert code == 0
    source = path.read_text()
    assert '"#' not in source and "'#" not in source  # so that naive_comments is exact here
    assert naive_comments(out) == naive_comments(source)
    assert naive_comments(source)  # every spec has at least its schema modeline
    # the text loads to an identical graph (same file name: base: resolves the same way)
    assert load_graph_text(out, str(path)) == load_graph(path)
    # and formatting is idempotent
    again = path.parent / f".fmt-{path.name}"
    try:
        again.write_text(out)
        assert fmt(capsys, str(again))[1] == out
    finally:
        again.unlink()


TINY = """\
# yaml-language-server: $schema=../docs/spec.schema.json
# A tiny net.

# Its input.
input: {size: 8, channels: 1}   # small
name: tiny
description: "not a # comment"
layers:
  # the stem
  - {filters: 4, type: conv, kernel: 3}  # first conv
  - type: conv      # block style
    filters: 4      # same width
    kernel: 3
  # two blocks
  - repeat: 2   # twice
    layers:
      # a 1x1
      - {type: conv, filters: 4, kernel: 1}
  - {type: global_avg_pool}
train:
  epochs: 2  # short
  # the learning rate
  lr: 0.1
# the end
"""

# Written by hand from the rules in docs/spec.md ("Canonical form"): key order of the source,
# names and defaults added, comments before the next key/layer or at the end of its line, two
# end-of-line comments of one (block-style) layer above it, a repeat's comments on its first copy.
TINY_FORMATTED = """\
# yaml-language-server: $schema=../docs/spec.schema.json
# A tiny net.

# Its input.
input: {size: 8, channels: 1}  # small
name: tiny
description: 'not a # comment'
layers:
  # the stem
  - {name: conv1, filters: 4, type: conv, kernel: 3}  # first conv
  # block style
  # same width
  - {name: conv2, type: conv, filters: 4, kernel: 3}
  # two blocks
  # twice
  # a 1x1
  - {name: conv3, type: conv, filters: 4, kernel: 1}
  - {name: conv4, type: conv, filters: 4, kernel: 1}
  - {name: gap1, type: global_avg_pool}
train:
  epochs: 2  # short
  # the learning rate
  lr: 0.1
# the end
"""


TINY_FLAT = TINY.replace("  - repeat: 2   # twice\n    layers:\n      # a 1x1\n      - {", "  - {")


def test_comments_go_with_their_keys_and_layers(capsys, tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    code, out, err = fmt(capsys, str(spec))
    assert (code, err) == (0, "")
    assert out == TINY_FORMATTED
    assert load_graph_text(out, "x.yaml") == load_graph(spec)


def test_stdin_is_formatted_with_its_comments(capsys, monkeypatch, tmp_path):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TINY.encode())))
    code, out, _ = fmt(capsys, "-")
    assert (code, out) == (0, TINY_FORMATTED)


def test_check_lists_the_files_that_would_change_and_exits_1(capsys, tmp_path):
    done, todo = tmp_path / "done.yaml", tmp_path / "todo.yaml"
    done.write_text(TINY_FORMATTED)
    todo.write_text(TINY)
    code, out, err = fmt(capsys, "--check", str(done), str(todo))
    assert code == 1
    assert out == f"would reformat: {todo}\n"
    assert err == "1 file would be reformatted, 1 file already formatted\n"
    assert todo.read_text() == TINY  # --check writes nothing
    code, out, err = fmt(capsys, "--check", str(done))
    assert (code, out, err) == (0, "", "0 files would be reformatted, 1 file already formatted\n")


def test_in_place_rewrites_then_check_passes(capsys, tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(TINY_FLAT)
    b.write_text(TINY_FORMATTED)
    printed = fmt(capsys, str(a))[1]
    code, out, err = fmt(capsys, "--in-place", str(a), str(b))
    assert (code, out, err) == (0, "", "1 file reformatted, 1 file already formatted\n")
    assert a.read_text() == printed  # what fmt prints is what --in-place writes
    assert "  # the stem\n  - {name: conv1, filters: 4, type: conv, kernel: 3}  # first conv\n" in printed
    assert b.read_text() == TINY_FORMATTED
    assert fmt(capsys, "--check", str(a), str(b))[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "b.yaml"]  # no temporary files left


def test_in_place_refuses_to_expand_a_repeat(capsys, tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    code, _, err = fmt(capsys, "--in-place", str(spec))
    assert code == 2 and err.startswith(f"error: {spec}: has repeat:, which canonical form expands")
    assert spec.read_text() == TINY


def test_in_place_refuses_to_flatten_a_base_and_writes_nothing(capsys, tmp_path):
    base, derived, plain = tmp_path / "base.yaml", tmp_path / "derived.yaml", tmp_path / "plain.yaml"
    base.write_text(TINY_FORMATTED)
    derived.write_text("# mine\nbase: base.yaml\nname: derived\n")
    plain.write_text(TINY_FLAT)
    code, out, err = fmt(capsys, "-i", str(plain), str(derived))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {derived}: has base:, which canonical form expands — --in-place refuses to flatten it"
        f" (print it instead: `specc fmt {derived} > flat.yaml`)",
        "nothing written: 1 file with errors",
    ]
    assert plain.read_text() == TINY_FLAT and derived.read_text() == "# mine\nbase: base.yaml\nname: derived\n"
    # printing it is fine: the derived file's comment, then the base's network
    code, out, _ = fmt(capsys, str(derived))
    assert code == 0 and out.startswith("# mine\nname: derived\n") and "# the stem" not in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "error: {path}: no such file"),
        ("name: [\n", "{path}:2:1: YAML: expected the node content, but found '<stream end>'"),
    ],
)
def test_errors_are_one_line_exit_2(capsys, tmp_path, content, expected):
    path = tmp_path / "x.yaml"
    if content is not None:
        path.write_text(content)
    for argv in ([str(path)], ["--check", str(path)]):
        code, out, err = fmt(capsys, *argv)
        assert code == 2 and out == ""
        assert err.splitlines()[0] == expected.format(path=path)


def test_several_files_need_check_or_in_place(capsys, tmp_path):
    code, _, err = fmt(capsys, str(SPECS[0]), str(SPECS[1]))
    assert code == 2
    assert err == "error: fmt prints one spec — give --check or --in-place to format several files\n"


def test_json(capsys, tmp_path):
    import json

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    code, out, _ = fmt(capsys, "--json", str(spec))
    data = json.loads(out)
    assert code == 0 and data["file"] == str(spec)
    assert [layer["name"] for layer in data["spec"]["layers"]] == ["conv1", "conv2", "conv3", "conv4", "gap1"]
    code, out, _ = fmt(capsys, "--check", "--json", str(spec))
    assert code == 1 and json.loads(out) == {"ok": False, "files": [{"file": str(spec), "changed": True}]}
