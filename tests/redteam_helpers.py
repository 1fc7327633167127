"""Shared by the adversarial tests (tests/test_redteam_*.py)."""

from __future__ import annotations

from specc.cli import main


def refusal(argv: list[str], capsys) -> str:
    """The one stderr line of a refused command: exit 2, nothing on stdout, one line."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]
