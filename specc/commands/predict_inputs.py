"""The images `specc predict` reads: files and folders, loaded batch by batch, with a progress line.

Folders are searched recursively, in sorted order (the same run gives the same order), for
files whose extension is an image format Pillow reads (IMAGE_SUFFIXES); hidden files and
folders are passed over, and any other file is skipped with one note on stderr saying how
many and which. A file named on the command line is always read, whatever its extension,
and one that is not a readable image is an error.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from specc.errors import UserError

if TYPE_CHECKING:  # numpy loads only when predict runs: `specc check` stays light
    import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
MAX_IMAGE_PIXELS = 64 * 10**6  # a photo, not a decompression bomb
SKIPPED_SHOWN = 3


def collect_images(inputs: list[str]) -> list[str]:
    """The image files of `inputs` (files and folders), in order; notes skipped files on stderr."""
    found: list[str] = []
    skipped: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if any(part.startswith(".") for part in rel) or not child.is_file():
                    continue
                (found if child.suffix.lower() in IMAGE_SUFFIXES else skipped).append(str(child))
        elif path.exists() and not path.is_file():
            raise UserError(f"{item}: is a special file (device, FIFO or socket), expected an image or a folder")
        elif not path.exists():
            raise UserError(f"{item}: no such image file or folder")
        else:
            found.append(item)
    if skipped:
        shown = ", ".join(skipped[:SKIPPED_SHOWN]) + (", ..." if len(skipped) > SKIPPED_SHOWN else "")
        print(f"note: skipped {len(skipped)} file(s) that are not images by their extension: {shown}", file=sys.stderr)
    if not found:
        raise UserError(f"{', '.join(inputs)}: no image files (extensions: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def batches(paths: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


class Progress:
    """`done/total images` on one stderr line, redrawn in place — only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.shown = sys.stderr.isatty() and total > 1

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")

    def advance(self, n: int) -> None:
        self.done += n
        if self.shown:
            sys.stderr.write(f"\r{self.done}/{self.total} images ({100 * self.done // self.total}%)")
            sys.stderr.flush()

    def close(self) -> None:
        self.clear()


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
