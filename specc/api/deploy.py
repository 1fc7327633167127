"""`specc.compile` and `specc.predict`: the deployment half of the API, re-exported by
`specc.api` and `specc`. Heavy libraries (torch, onnx, onnxruntime, numpy) are imported on call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specc.errors import UserError
from specc.frontend import SpecLike, check

if TYPE_CHECKING:
    import numpy as np
    import torch

    from specc.ir import Graph

__all__ = ["TARGETS", "Predictions", "compile", "predict"]


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
    model: str | Path | bytes | torch.nn.Module,
    images: str | Path | Sequence[str | Path] | np.ndarray,
    *,
    provider: str | None = None,
) -> Predictions:
    """Classify images with a model `specc compile` wrote (an .onnx path or its bytes, run in
    onnxruntime) or a module `build` made. `images`: image files (decoded, resized, converted
    to RGB or grey as `specc predict` does) or pixels 0..255 as an array (C, H, W) or
    (N, C, H, W) of the model's input size. Pixels are preprocessed as the ONNX model's
    metadata says (a module: pixels / 255); an `--io fp16` model is fed float16. `provider`:
    onnxruntime's execution provider, "cpu", "cuda" or "tensorrt" (default: cuda when
    installed, else cpu), as `specc predict --provider`.

        >>> specc.predict("build/allcnn_c.onnx", "examples/rgb_32.png").probs.shape
        (1, 10)"""
    import numpy as np

    if isinstance(model, (str, Path, bytes)):
        return _predict_onnx(model, images, provider)
    if provider is not None:
        raise UserError("provider: applies to an ONNX model (onnxruntime), not to a torch module")
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


def _predict_onnx(model: str | Path | bytes, images: Any, provider: str | None) -> Predictions:
    from specc.commands.predict import fixed_batch, in_input_dtype, preprocess, run_batch, softmax
    from specc_onnx.runtime import check_provider, make_session, read_metadata, resolve_providers

    source = str(model) if isinstance(model, (str, Path)) else "model"
    meta = read_metadata(model if isinstance(model, bytes) else str(model))  # one line for a non-specc file
    if "explain" in meta.extra or meta.classes is None:
        raise UserError(f"{source}: predict needs a classifier compiled without --explain (spec '{meta.name}')")
    batch = preprocess(_pixels(images, meta.input_shape, source), meta.preprocessing)
    providers = resolve_providers(provider)
    session = make_session(model if isinstance(model, bytes) else str(model), providers=providers)
    check_provider(session, providers, source)
    fixed = fixed_batch(session, source, remedy="batch='dynamic'")
    scores_name = session.get_outputs()[-1].name  # the class scores come last
    scores = run_batch(session, scores_name, in_input_dtype(session, batch), fixed)  # float32
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
