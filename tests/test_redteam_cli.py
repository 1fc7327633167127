"""Requests that cannot be met, each refused in one line with exit 2: stdin named twice,
a --width-mult too large; and write_files given two links to one file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from specc.fileio import write_files
from tests.redteam_helpers import refusal

ROOT = Path(__file__).resolve().parents[1]
MODEL_A = ROOT / "specs" / "model_a.yaml"


@pytest.mark.parametrize("argv", [["check", "-", "-"], ["fmt", "--check", "-", "-"]])
def test_stdin_named_twice(argv, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(MODEL_A.read_bytes())))
    assert refusal(argv, capsys) == "error: SPEC -: stdin given more than once — it can be read only once"


def test_draw_diff_of_stdin_against_stdin(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(MODEL_A.read_bytes())))
    out = tmp_path / "d.svg"
    line = refusal(["draw", "-", "--diff", "-", "-o", str(out)], capsys)
    assert line == "error: --diff -: SPEC already reads stdin — give one of the two as a file"
    assert not out.exists()


def test_width_mult_too_large_says_so(capsys):
    line = refusal(["transform", str(MODEL_A), "--width-mult", "1e9"], capsys)
    assert line == "error: --width-mult 1e+09: too large — expected a number > 0 and below 1e6, e.g. 0.5 or 2"


def test_two_links_to_one_file_leave_no_temporary(tmp_path):
    target = tmp_path / "t.yaml"
    target.write_text("old")
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).symlink_to("t.yaml")
    sizes = write_files({tmp_path / "a.yaml": b"first", tmp_path / "b.yaml": b"second!"})
    assert target.read_bytes() == b"second!"
    assert sizes == {tmp_path / "a.yaml": 7, tmp_path / "b.yaml": 7}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "b.yaml", "t.yaml"]
    assert (tmp_path / "a.yaml").is_symlink() and (tmp_path / "b.yaml").is_symlink()
