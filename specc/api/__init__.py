"""The Python API; it mirrors the CLI. Errors a user can cause raise `SpecError`
(located diagnostics) or `UserError` (one line). Documented with runnable examples in
docs/api.md.

`load` and `check` are the core's front end (`specc.frontend`); the rest are the friendly
front doors to the layers above the core — `transform` (specc.transforms), `build` and
`compile` (the PyTorch and ONNX backends, which take a Graph only), `train` (the loop
`specc train` runs, in this process), `predict` (onnxruntime, or a built module) and
`explain` (specc_viz). torch, onnx and numpy are imported on call, never on import.
`compile` and `predict` live in `specc.api.deploy`, `train` in `specc.api.training`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specc.api.deploy import Predictions, compile, predict
from specc.api.training import TrainResult, train
from specc.emit import to_yaml
from specc.frontend import CheckResult, SpecLike, check, load
from specc.summary import render

if TYPE_CHECKING:
    import numpy as np
    import torch

    from specc.ir import Graph
    from specc.transforms import Transform, TransformResult
    from specc_torch import SpeccModule

__all__ = [
    "CheckResult",
    "Predictions",
    "SpecLike",
    "TrainResult",
    "build",
    "check",
    "compile",
    "explain",
    "fmt",
    "from_onnx",
    "from_torch",
    "load",
    "predict",
    "summary",
    "train",
    "transform",
]


def summary(spec: SpecLike, overrides: list[str] | None = None) -> str:
    """The summary table of a spec as text: per layer its type, output shape, parameters,
    MACs and receptive field, then the totals (`specc summary`).

        >>> print(specc.summary("specs/zoo/lenet5.yaml").splitlines()[0])
        lenet5: input 1x32x32, 10 classes"""
    return render(check(spec, overrides).report)


def fmt(spec: SpecLike, overrides: list[str] | None = None) -> str:
    """Canonical YAML of a spec: `repeat` expanded, `base:` resolved, every layer named
    (`specc fmt`).

        >>> specc.fmt("specs/zoo/lenet5.yaml").splitlines()[0]
        'name: lenet5'"""
    return to_yaml(check(spec, overrides).graph)


def build(
    spec: SpecLike, *, seed: int | None = 0, output: str = "logits", overrides: list[str] | None = None
) -> SpeccModule:
    """A spec (path, YAML text or Graph) -> an initialised `specc_torch.SpeccModule` on the CPU.

    `seed`: the weights' seed (None: nondeterministic); the global RNG is never touched.
    `output`: "logits" drops a trailing softmax (for CrossEntropyLoss), "probs" keeps it.
    `overrides`: `--set`-style "key=value" strings. Raises `SpecError` for an invalid spec.
    Imports torch on first use.

        >>> tuple(specc.build("specs/allcnn_c.yaml")(torch.zeros(1, 3, 32, 32)).shape)
        (1, 10)"""
    import specc_torch

    return specc_torch.build(load(spec, overrides), seed=seed, output=output)


def from_onnx(path: str | Path | bytes, *, name: str | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """An ONNX model (a path or serialised bytes) -> (Graph, weights): the spec and its weights
    in PyTorch's state_dict names as float32 numpy arrays. Raises `UserError` (one line naming
    the node, its op and why) for what specc cannot represent exactly. Imports onnx on call.

        >>> graph, weights = specc.from_onnx("build/allcnn_c.onnx")
        >>> weights["conv1.weight"].shape
        (96, 3, 3, 3)"""
    from specc_onnx.importer import import_onnx

    return import_onnx(path, name=name)


def from_torch(
    module: torch.nn.Module, example_input: torch.Tensor, *, name: str | None = None
) -> tuple[Graph, dict[str, np.ndarray]]:
    """A PyTorch module -> (Graph, weights), through ONNX export (opset 17, eval mode) and the
    same importer as `from_onnx`. `example_input`: one (N, C, H, W) tensor; `name` defaults to
    the module's class name.

        >>> graph, weights = specc.from_torch(torch.nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 16, 16))"""
    from specc_onnx.importer import import_onnx
    from specc_torch.export import to_onnx_bytes

    data = to_onnx_bytes(module, example_input)
    return import_onnx(data, name=name or type(module).__name__, label=type(module).__name__)


# -- transform and explain: the API of the layers above, imported on call -----------------
def transform(
    spec: SpecLike,
    steps: Iterable[tuple[str, Any] | Transform] = (),
    *,
    overrides: list[str] | None = None,
    **named: Any,
) -> TransformResult:
    """Rewrite a spec with transforms from the table (`specc transform --help` lists them):
    keywords applied in the order written, or (name, value) pairs / `Transform` objects in
    `steps`. Returns a `TransformResult`: `.graph`, `.report`, `.notes`, `.to_yaml()`.

        >>> specc.transform("specs/model_c.yaml", replace_pooling="conv").report.total_params
        1369738"""
    from specc.transforms import transform as run_transforms

    return run_transforms(spec, steps, overrides=overrides, **named)


def explain(
    model: torch.nn.Module | SpecLike,
    inputs: torch.Tensor,
    *,
    layer: str | None = None,
    units: Any = None,
    method: str = "guided",
    **options: Any,
) -> torch.Tensor:
    """Guided backpropagation, deconvnet or saliency maps (`method` "guided", "deconvnet",
    "backprop") of `units` of `layer` (None: the class scores, units are classes) for
    `inputs` (B, C, H, W): a tensor (B, U, C, H, W), or (B, C, H, W) for a single unit.
    `model` is a built module or a spec (built with seed 0). `options`: see
    `specc_viz.explain` (seed, engine, max_rows, batch_size).

        >>> maps = specc.explain("specs/allcnn_c.yaml", torch.rand(2, 3, 32, 32), layer="conv6", units=[0, 5])
        >>> tuple(maps.shape)
        (2, 2, 3, 32, 32)"""
    import torch

    from specc_viz import explain as run_explain

    module = model if isinstance(model, torch.nn.Module) else build(model)
    return run_explain(module, inputs, layer=layer, units=units, method=method, **options)
