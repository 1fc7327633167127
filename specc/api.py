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
    from pathlib import Path

    import numpy as np
    import torch

    from specc.ir import Graph
    from specc_torch import SpeccModule

__all__ = ["CheckResult", "SpecLike", "build", "check", "fmt", "from_onnx", "from_torch", "load", "summary"]


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


def from_onnx(path: str | Path | bytes, *, name: str | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """An ONNX model (a path or serialised bytes) -> (Graph, weights): the spec and its weights
    in PyTorch's state_dict names as float32 numpy arrays. Raises `UserError` (one line naming
    the node, its op and why) for what specc cannot represent exactly. Imports onnx on call."""
    from specc_onnx.importer import import_onnx

    return import_onnx(path, name=name)


def from_torch(
    module: torch.nn.Module, example_input: torch.Tensor, *, name: str | None = None
) -> tuple[Graph, dict[str, np.ndarray]]:
    """A PyTorch module -> (Graph, weights), through ONNX export (opset 17, eval mode) and the
    same importer as `from_onnx`. `example_input`: one (N, C, H, W) tensor; `name` defaults to
    the module's class name."""
    from specc_onnx.importer import import_onnx
    from specc_torch.export import to_onnx_bytes

    data = to_onnx_bytes(module, example_input)
    return import_onnx(data, name=name or type(module).__name__, label=type(module).__name__)
