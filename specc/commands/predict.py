"""`specc predict`: classify images with a compiled ONNX model in onnxruntime.

Each image is decoded with Pillow, converted to RGB (3-channel models) or L (1-channel),
resized to the model's input size with bilinear filtering, turned into NCHW float32 pixels
0..255, then scaled and preprocessed exactly as the model's metadata says (pixels / 255 and
nothing else when it records no preprocessing).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from specc.commands.common import add_command
from specc.errors import UserError

if TYPE_CHECKING:  # numpy loads only when predict runs: `specc check` stays light
    import numpy as np


def register(sub) -> None:
    p = add_command(
        sub,
        "predict",
        "classify PNG/JPEG images with a compiled ONNX model (onnxruntime)",
        """
specc predict build/allcnn_c.onnx cat.png dog.jpg
specc predict build/allcnn_c.onnx photos/*.jpg --top-k 3 --json
""",
        description=(
            "Classify images with a model from `specc compile`, preprocessed as its metadata says;"
            " prints the top-k labels with probabilities. Runs on CUDA when onnxruntime-gpu is"
            " installed (pip install 'specc[gpu]'), on the CPU otherwise."
        ),
    )
    p.add_argument("model", metavar="MODEL.onnx", help="an ONNX model compiled by specc")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="how many labels per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.top_k <= 0:
        raise UserError(f"--top-k {args.top_k}: expected a positive integer")
    try:
        from specc_onnx.runtime import make_session, read_metadata
    except ImportError as exc:
        raise UserError(f"predict needs onnx and onnxruntime ({exc}) — pip install 'specc[onnx]'") from None
    import numpy as np

    meta = read_metadata(args.model)  # one clear line for a corrupt or non-specc file
    if "explain" in meta.extra:
        raise UserError(
            f"{args.model}: an explanation model (`specc compile --explain`), which computes maps, not class"
            " scores — run it with onnxruntime (outputs: reconstruction, activation), or predict with the"
            " model `specc compile` wrote without --explain"
        )
    if meta.classes is None:
        raise UserError(
            f"{args.model}: predict ranks class scores, but spec '{meta.name}' has no classes"
            " — add 'classes: N' to the spec (its last layer giving N scores) and compile it again"
        )
    pixels = np.stack([load_image(path, meta.input_shape) for path in args.images])  # (N, C, H, W), 0..255
    batch = preprocess(pixels, meta.preprocessing)
    session = make_session(args.model)
    inputs = session.get_inputs()[0]
    fixed = inputs.shape[0] if isinstance(inputs.shape[0], int) else None
    if fixed is not None and not 1 <= fixed <= MAX_FIXED_BATCH:
        raise UserError(
            f"{args.model}: the model's input has a fixed batch of {fixed:,} — expected 1 to {MAX_FIXED_BATCH:,}"
            " (compile it with --batch dynamic)"
        )
    scores_name = session.get_outputs()[-1].name  # the class scores come last (`classes:` applies to it)
    scores = _run(session, inputs.name, scores_name, batch, fixed)
    probs = scores if meta.output == "probs" else softmax(scores)
    k = min(args.top_k, probs.shape[1])
    results = []
    for path, row in zip(args.images, probs):
        top = np.argsort(-row, kind="stable")[:k]
        results.append(
            {"image": path, "top": [{"label": meta.label(int(i)), "index": int(i), "prob": float(row[i])} for i in top]}
        )
    if args.json:
        print(json.dumps({"model": meta.name, "provider": session.get_providers()[0], "results": results}, indent=2))
    else:
        for r in results:
            print(f"{r['image']}: " + ", ".join(f"{t['label']} (p={t['prob']:.3f})" for t in r["top"]))
    return 0


MAX_IMAGE_PIXELS = 64 * 10**6  # a photo, not a decompression bomb
MAX_FIXED_BATCH = 65536  # a batch baked into a model that predict would pad to


def load_image(path: str, shape: tuple[int, int, int]) -> np.ndarray:
    """(C, H, W) float32 pixels 0..255 of one image file, resized (bilinear) to the model's size."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    if not Path(path).is_file():
        raise UserError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit says it, once
            with Image.open(path) as image:  # the header only: the size is known before decoding
                _check_size(path, *image.size)
                image = image.convert("RGB" if c == 3 else "L")
                if image.size != (w, h):
                    image = image.resize((w, h), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.float32)
    except Image.DecompressionBombError:  # Pillow's own, larger limit, checked while opening
        raise UserError(
            f"{path}: the image claims more pixels than the limit of {MAX_IMAGE_PIXELS // 10**6} megapixels"
            " (a decompression bomb?)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable image ({exc})") from None
    if c not in (1, 3):
        raise UserError(f"the model takes {c}-channel input; predict reads RGB (3) or grey (1) images only")
    return array[None] if c == 1 else array.transpose(2, 0, 1)


def _check_size(path: str, width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise UserError(f"{path}: an image of {width}x{height} pixels — expected at least 1x1")
    if width * height > MAX_IMAGE_PIXELS:
        raise UserError(
            f"{path}: an image of {width}x{height} pixels exceeds the limit of"
            f" {MAX_IMAGE_PIXELS // 10**6} megapixels (a decompression bomb?)"
        )


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


def _run(session, name: str, output: str, batch: np.ndarray, fixed: int | None) -> np.ndarray:
    """Run in chunks of the model's fixed batch size (padding the last), or all at once."""
    import numpy as np

    if fixed is None:
        return session.run([output], {name: batch})[0]
    out = []
    for start in range(0, len(batch), fixed):
        chunk = batch[start : start + fixed]
        padded = np.concatenate([chunk, np.zeros((fixed - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        out.append(session.run([output], {name: padded})[0][: len(chunk)])
    return np.concatenate(out)
