"""`specc predict`: classify images (files and whole folders) with a compiled ONNX model in onnxruntime.

Each image is decoded with Pillow, converted to RGB (3-channel models) or L (1-channel),
resized to the model's input size with bilinear filtering, turned into NCHW float32 pixels
0..255, then scaled and preprocessed exactly as the model's metadata says (pixels / 255 and
nothing else when it records no preprocessing). Images are read and run `--batch` at a time,
so a folder of any size needs the memory of one batch. An explanation model
(`specc compile --explain`) writes its maps instead (`specc.commands.predict_explain`).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from specc.commands.common import add_command, positive_int, refuse_stdout
from specc.commands.predict_inputs import MAX_IMAGE_PIXELS, Progress, batches, collect_images, load_image
from specc.errors import UserError

if TYPE_CHECKING:  # numpy loads only when predict runs: `specc check` stays light
    import numpy as np

__all__ = ["MAX_FIXED_BATCH", "MAX_IMAGE_PIXELS", "load_image", "preprocess", "softmax"]
PROVIDER_CHOICES = ("cpu", "cuda", "tensorrt")
MAX_FIXED_BATCH = 65536  # a batch baked into a model that predict would pad to


def register(sub) -> None:
    p = add_command(
        sub,
        "predict",
        "classify images (files or folders) with a compiled ONNX model (onnxruntime)",
        """
specc predict build/allcnn_c.onnx cat.png dog.jpg
specc predict build/allcnn_c.onnx photos/ --batch 64 --json > predictions.json
specc predict build/allcnn_c.onnx cat.png --provider cuda
specc predict build/allcnn_c.guided.conv6.onnx cat.png --out maps/
""",
        description=(
            "Classify images with a model from `specc compile` or `specc quantize`, preprocessed as its"
            " metadata says; prints the top-k labels with probabilities. Folders are searched recursively"
            " for image files (other files are skipped with a note). An explanation model"
            " (`specc compile --explain`) writes each image's map as .npy and .png into --out instead."
            " Runs on CUDA when onnxruntime-gpu is installed (pip install 'specc[gpu]'), else on the CPU."
        ),
    )
    p.add_argument("model", metavar="MODEL.onnx", help="an ONNX model compiled by specc")
    p.add_argument("images", nargs="+", metavar="IMAGE|DIR", help="image files or folders of them")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="how many labels per image (default 5)")
    p.add_argument("--batch", type=positive_int, default=32, metavar="N", help="images per run (default 32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--provider", choices=PROVIDER_CHOICES, help="execution provider (default: cuda when installed, else cpu)"
    )
    p.add_argument("--out", metavar="DIR", help="where an explanation model's maps go (.npy and .png)")
    p.set_defaults(func=run)


def run(args) -> int:
    refuse_stdout("--out", args.out, "the maps (.npy and .png)", "a folder")
    if args.top_k <= 0:
        raise UserError(f"--top-k {args.top_k}: expected a positive integer")
    try:
        from specc_onnx.runtime import make_session, read_metadata, resolve_providers
    except ImportError as exc:
        raise UserError(f"predict needs onnx and onnxruntime ({exc}) — pip install 'specc[onnx]'") from None

    meta = read_metadata(args.model)  # one clear line for a corrupt or non-specc file
    explain = "explain" in meta.extra
    if not explain and meta.classes is None:
        raise UserError(
            f"{args.model}: predict ranks class scores, but spec '{meta.name}' has no classes"
            " — add 'classes: N' to the spec (its last layer giving N scores) and compile it again"
        )
    if args.out and not explain:
        raise UserError(f"--out: writes the maps of an explanation model; {args.model} is a classifier")
    if explain and not args.out:
        raise UserError(
            f"{args.model}: an explanation model (`specc compile --explain`) writes maps, not labels"
            " — pass --out DIR for its .npy and .png files"
        )
    providers = resolve_providers(args.provider)
    paths = collect_images(args.images)
    session = make_session(args.model, providers=providers)
    if explain:
        from specc.commands.predict_explain import explain_images

        return explain_images(session, meta, paths, args, warn=lambda: warn_random_weights(meta, args.model))
    fixed = fixed_batch(session, args.model)
    scores_name = session.get_outputs()[-1].name  # the class scores come last (`classes:` applies to it)
    results = []
    progress = Progress(len(paths))
    try:
        for chunk in batches(paths, args.batch):
            scores = run_batch(session, scores_name, model_input(session, meta, chunk), fixed)
            if not results:  # after the first batch ran: a bad image further on is then the only line
                warn_random_weights(meta, args.model)
            probs = scores if meta.output == "probs" else softmax(scores)
            rows = [_top(path, row, meta, args.top_k) for path, row in zip(chunk, probs)]
            results += rows
            progress.clear()
            if not args.json:
                for r in rows:
                    print(f"{r['image']}: " + ", ".join(f"{t['label']} (p={t['prob']:.3f})" for t in r["top"]))
                sys.stdout.flush()
            progress.advance(len(chunk))
    finally:
        progress.close()
    if args.json:
        print(json.dumps({"model": meta.name, "provider": session.get_providers()[0], "results": results}, indent=2))
    return 0


def _top(path: str, row: np.ndarray, meta, k: int) -> dict:
    import numpy as np

    top = np.argsort(-row, kind="stable")[: min(k, len(row))]
    return {"image": path, "top": [{"label": meta.label(int(i)), "index": int(i), "prob": float(row[i])} for i in top]}


def warn_random_weights(meta, model: str) -> None:
    """`specc compile` without --weights records `specc.weights: seed N`: say so, predictions are noise."""
    weights = meta.extra.get("weights", "")
    if weights.startswith("seed "):
        print(
            f"warning: {model} was compiled without trained weights ({weights}): its weights are random and so are"
            " its predictions — compile it with --weights CKPT",
            file=sys.stderr,
        )


def fixed_batch(session, model: str, remedy: str = "--batch dynamic") -> int | None:
    """The batch size baked into the model's input, or None for a dynamic batch. `remedy`: how
    the caller compiles a dynamic batch (the flag, or the API's keyword)."""
    first = session.get_inputs()[0]
    fixed = first.shape[0] if isinstance(first.shape[0], int) else None
    if fixed is not None and not 1 <= fixed <= MAX_FIXED_BATCH:
        raise UserError(
            f"{model}: the model's input has a fixed batch of {fixed:,} — expected 1 to {MAX_FIXED_BATCH:,}"
            f" (compile it with {remedy})"
        )
    return fixed


def model_input(session, meta, paths: list[str]) -> np.ndarray:
    """The preprocessed batch of `paths`, in the input's dtype (float16 for `--io fp16` models)."""
    import numpy as np

    pixels = np.stack([load_image(path, meta.input_shape) for path in paths])  # (N, C, H, W), 0..255
    return in_input_dtype(session, preprocess(pixels, meta.preprocessing))


def in_input_dtype(session, batch: np.ndarray) -> np.ndarray:
    """`batch` as the model's input takes it: float16 for `--io fp16` models, else as it is."""
    import numpy as np

    return batch.astype(np.float16) if session.get_inputs()[0].type == "tensor(float16)" else batch


def preprocess(pixels: np.ndarray, preprocessing: dict | None) -> np.ndarray:
    """Pixels (N, C, H, W) on 0..255 -> the model's input, per the model's metadata."""
    import numpy as np

    if preprocessing is None:
        return (pixels / 255.0).astype(np.float32)
    from specc.preprocessing import Preprocessing

    return Preprocessing.from_dict(preprocessing).apply(pixels).astype(np.float32)


def softmax(scores: np.ndarray) -> np.ndarray:
    import numpy as np

    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def run_batch(session, output: str, batch: np.ndarray, fixed: int | None) -> np.ndarray:
    """One output of the model on `batch`, as float32, in chunks of its fixed batch size
    (padding the last), or all at once."""
    import numpy as np

    name = session.get_inputs()[0].name
    if fixed is None:
        return session.run([output], {name: batch})[0].astype(np.float32)
    out = []
    for start in range(0, len(batch), fixed):
        chunk = batch[start : start + fixed]
        padded = np.concatenate([chunk, np.zeros((fixed - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        out.append(session.run([output], {name: padded})[0][: len(chunk)])
    return np.concatenate(out).astype(np.float32)
