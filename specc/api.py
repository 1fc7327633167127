"""The Python API; it mirrors the CLI. Errors a user can cause raise `SpecError`
(located diagnostics) or `UserError` (one line).

`load` and `check` are the core's front end (`specc.frontend`); `build` is the friendly
front door to the PyTorch backend, which itself takes a Graph only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from specc.emit import to_yaml
from specc.frontend import CheckResult, SpecLike, check, load
from specc.summary import render

if TYPE_CHECKING:
    from specc_torch import SpeccModule

__all__ = ["CheckResult", "SpecLike", "build", "check", "fmt", "load", "summary"]


def summary(spec: SpecLike, overrides: list[str] | None = None) -> str:
    """The summary table of a spec as text."""
    return render(check(spec, overrides).report)


def fmt(spec: SpecLike, overrides: list[str] | None = None) -> str:
    """Canonical YAML of a spec."""
    return to_yaml(check(spec, overrides).graph)


def build(
    spec: SpecLike, *, seed: int | None = 0, output: str = "logits", overrides: list[str] | None = None
) -> SpeccModule:
    """A spec (path, YAML text or Graph) -> an initialised `specc_torch.SpeccModule` on the CPU.

    `seed`: the weights' seed (None: nondeterministic); the global RNG is never touched.
    `output`: "logits" drops a trailing softmax (for CrossEntropyLoss), "probs" keeps it.
    `overrides`: `--set`-style "key=value" strings. Raises `SpecError` for an invalid spec.
    Imports torch on first use."""
    import specc_torch

    return specc_torch.build(load(spec, overrides), seed=seed, output=output)
