"""docs/api.md is run: every `>>>` example in it, in a fresh folder holding the repository's
specs/ and examples/ (the examples write build/, runs/ and reimported/ there)."""

from __future__ import annotations

import doctest
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import specc

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"


def test_api_md_examples_run(tmp_path, monkeypatch):
    for folder in ("specs", "examples"):
        os.symlink(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    globs = {"specc": specc, "torch": torch, "np": np}
    result = doctest.testfile(
        str(API_DOC), module_relative=False, globs=globs, optionflags=doctest.ELLIPSIS, raise_on_error=False
    )
    assert result.attempted >= 30, "docs/api.md lost its examples"
    assert result.failed == 0, "see the doctest report above"


def test_api_md_shows_every_function():
    examples = "\n".join(line for line in API_DOC.read_text().splitlines() if line.startswith((">>> ", "... ")))
    functions = [name for name in specc.__all__ if callable(getattr(specc, name)) and name[0].islower()]
    missing = [name for name in functions if f"specc.{name}(" not in examples]
    assert not missing, f"docs/api.md has no example of {missing}"


@pytest.mark.parametrize("name", [n for n in specc.__all__ if n[0].islower() and callable(getattr(specc, n))])
def test_every_api_function_has_a_docstring(name):
    doc = getattr(specc, name).__doc__ or ""
    assert len(doc.split()) >= 8, f"specc.{name} needs a docstring"
