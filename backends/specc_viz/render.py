"""PNG grids of maps and images, each tile labelled; raw maps as .npy.

Display follows the paper: every tile gets its own contrast. A map is scaled by its largest
absolute value and centred on grey, so zero is grey and the sign stays visible (positive
brighter); a map that is all zero stays flat grey. Maps with 3 channels show as RGB, others
as grey (the mean over channels). Files are written atomically: a temporary file in the same
folder renamed into place.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from specc.errors import UserError
from specc.fileio import write_bytes

BACKGROUND = (255, 255, 255)
LABEL_COLOUR = (0, 0, 0)
PAD = 4
LABEL_HEIGHT = 12


@dataclass(frozen=True)
class Tile:
    """One picture of the grid: (H, W, 3) uint8 and the text under it."""

    pixels: np.ndarray
    label: str


def image_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """Raw pixels (C, H, W) on 0..255 -> (H, W, 3) uint8 (grey images replicated)."""
    rgb = np.clip(np.rint(np.asarray(pixels, dtype=np.float64)), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if rgb.shape[2] == 3:
        return rgb
    return np.repeat(rgb.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)


def _fit(pixels: np.ndarray, size: int) -> Image.Image:
    """Scale up (nearest: pixels stay visible) or down to fit a size x size square."""
    image = Image.fromarray(pixels)
    h, w = pixels.shape[:2]
    scale = size / max(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(shape, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR)


MAX_FIGURE_PIXELS = 100 * 10**6


def render_grid(rows: list[list[Tile | None]], *, tile: int = 96, title: str | None = None) -> Image.Image:
    """Tiles in rows (None leaves a gap), each scaled into a tile x tile cell with its label."""
    font = ImageFont.load_default()
    columns = max((len(r) for r in rows), default=1)
    cell_w, cell_h = tile + PAD, tile + LABEL_HEIGHT + PAD
    top = LABEL_HEIGHT + PAD if title else 0
    width, height = PAD + columns * cell_w, top + PAD + len(rows) * cell_h
    if width * height > MAX_FIGURE_PIXELS:
        raise UserError(
            f"the figure would be {width:,}x{height:,} pixels, over the limit of"
            f" {MAX_FIGURE_PIXELS // 10**6} megapixels — ask for fewer units or images, or a smaller --tile"
        )
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD, PAD // 2), title, fill=LABEL_COLOUR, font=font)
    for i, row in enumerate(rows):
        for j, item in enumerate(row):
            if item is None:
                continue
            x, y = PAD + j * cell_w, top + PAD + i * cell_h
            picture = _fit(item.pixels, tile)
            canvas.paste(picture, (x + (tile - picture.width) // 2, y + (tile - picture.height) // 2))
            draw.text((x, y + tile + 1), _clip_label(draw, item.label, tile, font), fill=LABEL_COLOUR, font=font)
    return canvas


def _clip_label(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    """The label, shortened with '…' until it fits under its tile."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def write_atomic(path: str | Path, data: bytes) -> int:
    """Write bytes to `path` atomically (`specc.fileio.write_bytes`); returns the size."""
    return write_bytes(path, data)


def save_png(image: Image.Image, path: str | Path) -> int:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())


def save_npy(array: np.ndarray, path: str | Path) -> int:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return write_atomic(path, buffer.getvalue())
