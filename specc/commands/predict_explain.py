"""`specc predict` on an explanation model (`specc compile --explain`): each image's map as .npy and .png.

An explanation model computes the forward pass and then the map of one unit of one layer
(its outputs: `reconstruction`, the map in the input's shape, and `activation`, the layer's
output). A model compiled with `--unit` has the unit built in. One compiled without it takes
a `unit_mask` input (the layer's shape) that says which unit to explain; predict explains
each image's strongest unit — the largest activation of the layer, as the paper does (for the
class-score layer that is the predicted class): a first run with an all-zero mask reads the
activations, a second run with a one-hot mask at the largest computes the map.

For IMAGE.png it writes DIR/IMAGE.<method>.<layer>.npy (the map, float32 (C, H, W)) and the
same name .png (per-image contrast, zero at grey, positive brighter — the display of
`specc visualize`). Files are written atomically, a batch at a time.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from specc.commands.predict import fixed_batch, model_input
from specc.commands.predict_inputs import Progress, batches
from specc.errors import UserError
from specc.fileio import write_files
from specc.heatmap import map_to_rgb

MASK = "unit_mask"


def explain_images(session, meta, paths: list[str], args, warn: Callable[[], None]) -> int:
    """Write the map of every image in `paths`; a line per image (or JSON) on stdout;
    `warn()` once the first batch has run (the random-weights warning)."""
    info = json.loads(meta.extra["explain"])
    method, layer = info.get("method", "map"), info.get("layer", "layer")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    names = _file_names(paths, f"{method}.{layer}")
    fixed = fixed_batch(session, args.model)
    results = []
    progress = Progress(len(paths))
    try:
        for chunk in batches(paths, fixed or args.batch):
            maps, units = _maps(session, model_input(session, meta, chunk), fixed)
            if not results:
                warn()
            files: dict[Path, bytes] = {}
            for path, m, unit in zip(chunk, maps, units):
                files[out / f"{names[path]}.npy"] = _npy(m)
                files[out / f"{names[path]}.png"] = _png(m)
                results.append({"image": path, "unit": unit, "npy": str(out / f"{names[path]}.npy")})
                results[-1]["png"] = str(out / f"{names[path]}.png")
            out.mkdir(parents=True, exist_ok=True)
            write_files(files)
            progress.clear()
            if not args.json:
                for r in results[-len(chunk) :]:
                    unit = "" if r["unit"] is None else f" (unit {','.join(map(str, r['unit']))})"
                    print(f"{r['image']}: {method} map of {layer}{unit} -> {r['png']}, {r['npy']}")
                sys.stdout.flush()
            progress.advance(len(chunk))
    finally:
        progress.close()
    if args.json:
        print(json.dumps({"model": meta.name, "explain": info, "results": results}, indent=2))
    return 0


def _file_names(paths: list[str], suffix: str) -> dict[str, str]:
    """IMAGE -> the stem of its map files; two images of one name would overwrite each other."""
    names: dict[str, str] = {}
    seen: dict[str, str] = {}
    for path in paths:
        stem = f"{Path(path).stem}.{suffix}"
        if stem in seen:
            raise UserError(f"{seen[stem]} and {path} would both write {stem}.png — predict them into separate --out")
        seen[stem], names[path] = path, stem
    return names


def _maps(session, x: np.ndarray, fixed: int | None) -> tuple[np.ndarray, list]:
    """The maps (N, C, H, W) of a batch and the unit each explains (None when built in)."""
    feeds = {session.get_inputs()[0].name: _pad(x, fixed)}
    n = len(x)
    mask_input = next((i for i in session.get_inputs() if i.name == MASK), None)
    units: list = [None] * n
    if mask_input is not None:
        mask_shape = [len(next(iter(feeds.values()))), *mask_input.shape[1:]]
        zeros = np.zeros(mask_shape, dtype=x.dtype)
        activation = session.run(["activation"], {**feeds, MASK: zeros})[0]
        mask = np.zeros_like(zeros)
        for i in range(n):  # the strongest unit of each image
            index = np.unravel_index(int(np.argmax(activation[i])), activation.shape[1:])
            mask[(i, *index)] = 1
            units[i] = [int(j) for j in index]
        feeds[MASK] = mask
    maps = session.run(["reconstruction"], feeds)[0][:n]
    return maps.astype(np.float32), units


def _pad(x: np.ndarray, fixed: int | None) -> np.ndarray:
    if fixed is None or len(x) == fixed:
        return x
    return np.concatenate([x, np.zeros((fixed - len(x), *x.shape[1:]), x.dtype)])


def _npy(m: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(m, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _png(m: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(map_to_rgb(m)).save(buffer, format="PNG")
    return buffer.getvalue()
