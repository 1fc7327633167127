"""The Python API; it mirrors the CLI. Errors a user can cause raise `SpecError`
(located diagnostics) or `UserError` (one line). Documented with runnable examples in
docs/api.md.

`load` and `check` are the core's front end (`specc.frontend`); the rest are the friendly
front doors to the layers above the core — `transform` (specc.transforms), `build` and
`compile` (the PyTorch and ONNX backends, which take a Graph only), `train` (the loop
`specc train` runs, in this process), `predict` (onnxruntime, or a built module) and
`explain` (specc_viz). torch, onnx and numpy are imported on call, never on import."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specc.emit import to_yaml
from specc.errors import Diagnostic, SourcePos, SpecError, UserError
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


# -- compile --------------------------------------------------------------------------------
TARGETS = ("onnx", "torch", "all")


def compile(
    spec: SpecLike,
    target: str = "all",
    out: str | Path = "build",
    *,
    weights: str | Path | Mapping[str, Any] | None = None,
    seed: int = 0,
    output: str = "logits",
    batch: str | int = "dynamic",
    opset: int | None = None,
    fold: bool = True,
    force: bool = False,
    overrides: list[str] | None = None,
) -> dict[str, Path]:
    """Compile a spec as `specc compile` does: `target` "onnx" (OUT/<name>.onnx, checked with
    onnx's checker and strict shape inference, the spec and preprocessing in its metadata),
    "torch" (OUT/<name>.py, a standalone module) or "all". Returns {target: path written}.

    `weights`: a checkpoint path (specc's or a plain state_dict) or a mapping of state_dict
    names to arrays (what `from_onnx` returns); else the seeded initialisation (`seed`).
    `output` "logits"/"probs", `batch` "dynamic" or a fixed size, `fold` folds batch_norm.
    Files are written all or none; existing ones only with `force=True`.

        >>> sorted(specc.compile("specs/allcnn_c.yaml", out="build"))
        ['onnx', 'torch']"""
    if target not in TARGETS:
        raise UserError(f"target {target!r}: expected one of {', '.join(TARGETS)}")
    graph = check(spec, overrides).graph
    from specc.fileio import write_files
    from specc.outputs import output_mode_problem

    problem = output_mode_problem(graph, output)
    if problem:
        raise UserError(f"output={output!r}: {problem}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"out={str(out_dir)!r}: exists and is not a folder")
    targets = ("onnx", "torch") if target == "all" else (target,)
    paths = {t: out_dir / f"{graph.name}.{'onnx' if t == 'onnx' else 'py'}" for t in targets}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise UserError(f"{', '.join(existing)} already exist(s) — pass force=True to overwrite")
    import specc_torch.codegen

    contents: dict[Path, bytes] = {}
    if "torch" in targets:
        contents[paths["torch"]] = specc_torch.codegen.generate(graph, output=output).encode("utf-8")
    if "onnx" in targets or weights is not None:  # given weights are checked even for torch
        arrays, provenance = _compile_weights(graph, weights, seed, output)
        if "onnx" in targets:
            from specc_onnx import DEFAULT_OPSET, emit, to_bytes, verify

            opset = opset or DEFAULT_OPSET
            model = emit(graph, arrays, opset=opset, batch=batch, output=output, fold_bn=fold, metadata=provenance)
            verify(model, graph)  # the checker and strict shape inference agree with specc, or it is a bug
            contents[paths["onnx"]] = to_bytes(model)
    write_files(contents)
    return paths


def _compile_weights(graph: Graph, weights: Any, seed: int, output: str) -> tuple[dict[str, Any], dict]:
    """numpy weights for the ONNX emitter and their provenance (the model's metadata)."""
    import numpy as np

    import specc_torch
    import specc_torch.weights

    if weights is None:
        module = specc_torch.build(graph, seed=seed, output=output)
        return specc_torch.weights.state_dict_numpy(module), {"weights": f"seed {seed}", "preprocessing": None}
    if isinstance(weights, Mapping):
        expected = specc_torch.weights.expected_shapes(graph)
        arrays = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in weights.items()}
        wrong = [k for k, shape in expected.items() if "num_batches" not in k and _shape(arrays.get(k)) != shape]
        if wrong:
            got = ", ".join(f"{k} {_shape(arrays.get(k)) or 'missing'} (expected {expected[k]})" for k in wrong[:3])
            raise UserError(f"weights do not fit spec '{graph.name}': {got}")
        return {k: v.astype(np.float32) for k, v in arrays.items()}, {"weights": "given", "preprocessing": None}
    from specc.checkpoint_io import CHECKPOINT_FORMAT, read_checkpoint

    tensors = specc_torch.weights.load_weights(weights, graph)
    payload = read_checkpoint(weights)
    recorded = isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT
    provenance = {
        "weights": f"checkpoint {Path(weights).name}",
        "preprocessing": payload.get("preprocessing") if recorded else None,
    }
    return {k: v.detach().cpu().numpy() for k, v in tensors.items()}, provenance


def _shape(array: Any) -> tuple[int, ...] | None:
    return None if array is None else tuple(array.shape)


# -- train ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """The end of a training run: `metrics` of its last evaluated epoch (`train_loss`,
    `train_acc`, `test_acc`, ...; empty when `max_steps` stopped it first), the best epoch
    (`best`: split, accuracy, epoch), and its files."""

    run_dir: Path
    checkpoint: Path  # last.pt: weights, optimizer, spec and recipe (resume with `specc train --resume`)
    best_checkpoint: Path | None  # best.pt, once an epoch was evaluated
    epochs: int
    metrics: dict[str, Any]
    best: dict[str, Any] | None
    stopped: str | None  # where max_steps stopped the run (None: it ran to the end)


def train(
    spec: SpecLike,
    *,
    out: str | Path | None = None,
    max_steps: int | None = None,
    limit_batches: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    quiet: bool = False,
    overrides: list[str] | None = None,
    **recipe: Any,
) -> TrainResult:
    """Train a spec in this process, with the loop, checkpoints and files of `specc train`.
    `recipe` keywords set the spec's `train:` keys (`dataset="synthetic"`, `epochs=1`,
    `lr=0.05`, `augment={"flip": True}`) and are validated like `--set train.KEY=VALUE`.
    `out`: a new or empty run folder (default runs/<spec name>); `max_steps` stops early
    (resumable), `limit_batches` trains on the first N batches of each epoch; `quiet` keeps
    the run's report off stdout (warnings still go to stderr). The run is deterministic for a
    given seed and thread count.

        >>> result = specc.train("specs/allcnn_c_fmnist.yaml", dataset="synthetic", epochs=1, out="runs/api")
        >>> result.checkpoint.name, result.epochs
        ('last.pt', 1)"""
    from specc.outputs import require_classifier
    from specc.train.config import recipe_of
    from specc.train.inputs import check_fits
    from specc.train.rundir import check_new_run_dir

    # Keywords go through the spec's own `--set` mechanism (JSON is YAML), so they are
    # validated and recorded like any edit; an error names the keyword as it was written.
    keywords = {f"--set train.{key}={json.dumps(value)}": f"{key}={value!r}" for key, value in recipe.items()}
    assignments = [label.removeprefix("--set ") for label in keywords]
    try:
        graph = check(spec, [*(overrides or []), *assignments]).graph
    except SpecError as exc:
        raise SpecError([_relabelled(d, keywords) for d in exc.diagnostics]) from None
    require_classifier(graph, "specc.train")
    run_dir = Path(out or f"runs/{graph.name}")
    check_new_run_dir(run_dir)
    cfg = recipe_of(graph.train)
    graph = graph.replace(train=cfg.to_dict())  # checkpoints record every setting explicitly
    check_fits(graph, cfg)
    from specc.train.loop import RunOptions
    from specc.train.loop import train as run_training

    options = RunOptions(
        out=run_dir,
        threads=threads,
        command=("specc.train", graph.name),
        overrides=tuple([*(overrides or []), *assignments]),
        progress=progress,
        max_steps=max_steps,
        limit_batches=limit_batches,
    )
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        summary = run_training(graph, cfg, options)
    best = run_dir / "best.pt"
    return TrainResult(
        run_dir=run_dir,
        checkpoint=run_dir / "last.pt",
        best_checkpoint=best if best.exists() else None,
        epochs=summary["epochs"],
        metrics=dict(summary["last"]),
        best=summary["best"],
        stopped=summary["stopped"] or None,
    )


def _relabelled(d: Diagnostic, keywords: dict[str, str]) -> Diagnostic:
    """A diagnostic whose source is a recipe keyword's `--set`, naming the keyword instead."""
    if d.pos.file not in keywords:
        return d
    pos = SourcePos(keywords[d.pos.file], d.pos.line, d.pos.col)
    return Diagnostic(pos, d.path, d.message, d.label, d.severity)


# -- predict --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Predictions:
    """Class probabilities for a batch of images: `probs` (N, classes), rows summing to 1;
    `labels` the class names (the spec's `labels:`, else "class 0", "class 1", ...)."""

    probs: np.ndarray
    labels: tuple[str, ...]

    @property
    def predicted(self) -> list[str]:
        """The most probable label of each image."""
        return [self.labels[int(i)] for i in self.probs.argmax(axis=1)]

    def top(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """The k most probable (label, probability) pairs of each image, best first."""
        import numpy as np

        return [[(self.labels[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:k]] for row in self.probs]


def predict(
    model: str | Path | bytes | torch.nn.Module, images: str | Path | Sequence[str | Path] | np.ndarray
) -> Predictions:
    """Classify images with a model `specc compile` wrote (an .onnx path or its bytes, run in
    onnxruntime) or a module `build` made. `images`: image files (decoded, resized, converted
    to RGB or grey as `specc predict` does) or pixels 0..255 as an array (C, H, W) or
    (N, C, H, W) of the model's input size. Pixels are preprocessed as the ONNX model's
    metadata says (a module: pixels / 255).

        >>> specc.predict("build/allcnn_c.onnx", "examples/rgb_32.png").probs.shape
        (1, 10)"""
    import numpy as np

    if isinstance(model, (str, Path, bytes)):
        return _predict_onnx(model, images)
    graph: Graph | None = getattr(model, "graph", None)
    if graph is None:
        raise UserError(f"model: expected an ONNX path or a module specc.build made, got {type(model).__name__}")
    from specc.outputs import require_classifier

    classes = require_classifier(graph, "specc.predict")
    pixels = _pixels(images, graph.input_shape, "the module")
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = model(torch.from_numpy((pixels / 255.0).astype(np.float32))).numpy()
    finally:
        model.train(was_training)
    from specc.commands.predict import softmax

    probs = scores if getattr(model, "output", "logits") == "probs" else softmax(scores)
    return Predictions(probs, tuple(graph.labels or [f"class {i}" for i in range(classes)]))


def _predict_onnx(model: str | Path | bytes, images: Any) -> Predictions:
    from specc.commands.predict import MAX_FIXED_BATCH, preprocess, softmax
    from specc_onnx.runtime import make_session, read_metadata

    source = str(model) if isinstance(model, (str, Path)) else "model"
    meta = read_metadata(model if isinstance(model, bytes) else str(model))  # one line for a non-specc file
    if "explain" in meta.extra or meta.classes is None:
        raise UserError(f"{source}: predict needs a classifier compiled without --explain (spec '{meta.name}')")
    batch = preprocess(_pixels(images, meta.input_shape, source), meta.preprocessing)
    session = make_session(model if isinstance(model, bytes) else str(model))
    feed = session.get_inputs()[0]
    fixed = feed.shape[0] if isinstance(feed.shape[0], int) else None
    if fixed is not None and not 1 <= fixed <= MAX_FIXED_BATCH:
        raise UserError(f"{source}: the model's input has a fixed batch of {fixed:,} — compile it with batch='dynamic'")
    scores_name = session.get_outputs()[-1].name  # the class scores come last
    import numpy as np

    step = fixed or len(batch)
    chunks = []
    for start in range(0, len(batch), step):  # a fixed-batch model runs padded chunks
        chunk = batch[start : start + step]
        padded = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)])
        chunks.append(np.asarray(session.run([scores_name], {feed.name: padded})[0])[: len(chunk)])
    scores = np.concatenate(chunks)
    probs = scores if meta.output == "probs" else softmax(scores)
    return Predictions(probs, tuple(meta.label(i) for i in range(probs.shape[1])))


def _pixels(images: Any, shape: tuple[int, int, int], model: str) -> np.ndarray:
    """(N, C, H, W) float32 pixels 0..255 from image files or an array."""
    import numpy as np

    from specc.commands.predict import load_image

    if isinstance(images, (str, Path)):
        images = [images]
    if isinstance(images, np.ndarray):
        array = images[None] if images.ndim == 3 else images
        if array.ndim != 4 or tuple(array.shape[1:]) != tuple(shape):
            raise UserError(
                f"images: an array of shape {images.shape} — {model} takes (N, {', '.join(map(str, shape))})"
            )
        return array.astype(np.float32)
    paths = [str(p) for p in images]
    if not paths:
        raise UserError("images: no image given")
    return np.stack([load_image(p, shape) for p in paths])
