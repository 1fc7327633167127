"""Datasets read image by image: what `--data-mode stream` trains on when a dataset does not
fit in memory.

A `StreamDataset` holds only what names its images (file paths, or row numbers of a
memory-mapped .npy) and their labels; `read(positions)` decodes a batch of them on demand, in
whichever process calls it (the DataLoader's workers, `specc.training.data.streamloader`). A
folder image is decoded exactly as the in-memory path decodes it (`folder.decode_image`:
shorter side resized to the spec's size, centre crop), so both modes train on the same
pixels, batch for batch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from specc.errors import UserError
from specc.training.data.arrays import npy_split, open_images
from specc.training.data.folder import decode_image, list_folder

STREAMABLE = ("folder", "npy")

# The memory map of each .npy file, opened once per process: a DataLoader worker (forked or
# spawned) opens its own instead of inheriting a pickled array.
_MAPS: dict[tuple[str, int], np.ndarray] = {}


@dataclass(frozen=True, eq=False)
class StreamDataset:
    """One split, read on demand: `items` are file paths (folder) or rows of `array_path` (npy)."""

    items: tuple
    labels: np.ndarray  # (N,) int64
    classes: int
    label_names: list[str]
    name: str  # "folder" or "npy"
    source: str
    image_shape: tuple[int, int, int]  # (C, H, W) that `read` returns per image
    array_path: Path | None = None  # npy only

    def __post_init__(self) -> None:
        assert self.labels.dtype == np.int64 and self.labels.shape == (len(self.items),)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def decoded_bytes(self) -> int:
        """What the split would take in memory as one uint8 array."""
        return len(self) * int(np.prod(self.image_shape))

    def read(self, positions: Sequence[int]) -> np.ndarray:
        """Images `positions` (dataset order) as (B, C, H, W) uint8."""
        out = np.empty((len(positions), *self.image_shape), dtype=np.uint8)  # (B, C, H, W)
        if self.array_path is not None:
            array = _memory_map(self.array_path)
            rows = np.asarray([self.items[p] for p in positions], dtype=np.int64)
            out[:] = array[rows]  # one gather: the pages of these rows only
            return out
        size = self.image_shape[1:]
        for i, position in enumerate(positions):
            out[i] = decode_image(self.items[position], (size[0], size[1])).transpose(2, 0, 1)
        return out

    def subset(self, mask: np.ndarray, source: str) -> StreamDataset:
        """The images where `mask` (N,) is true, in the same order."""
        items = tuple(item for item, keep in zip(self.items, mask) if keep)
        return replace(self, items=items, labels=self.labels[mask], source=source)

    def fingerprint(self) -> str:
        """First 16 hex digits of a sha256 over what names the images and their labels: file
        names and sizes (folder), or the array's shape and rows plus its first and last
        64 KiB (npy). Hashing every pixel of a dataset too large for memory would cost a full
        read at each start, so an image edited in place without changing its size is not seen."""
        digest = hashlib.sha256(f"{self.name}|{self.image_shape}|".encode())
        if self.array_path is not None:
            array = _memory_map(self.array_path)
            digest.update(f"{array.shape}|{self.array_path.stat().st_size}|".encode())
            digest.update(np.asarray(self.items, dtype=np.int64).tobytes())
            flat = array.reshape(-1)
            digest.update(flat[: 1 << 16].tobytes() + flat[-(1 << 16) :].tobytes())
        else:
            root = Path(self.source)
            for path in self.items:
                digest.update(f"{path.relative_to(root)}|{path.stat().st_size}\n".encode())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()[:16]


def _memory_map(path: Path) -> np.ndarray:
    key = (str(path), os.getpid())
    if key not in _MAPS:
        _MAPS[key] = open_images(path)
    return _MAPS[key]


def open_stream(name: str, data_dir: str | None, split: str, image_size: tuple[int, int]) -> StreamDataset:
    """One split of a streamable dataset (`folder` or `npy`), listed but not decoded."""
    height, width = image_size
    if name == "folder":
        listing = list_folder(data_dir, split)
        classes = listing.classes
        return StreamDataset(
            tuple(listing.files), listing.labels, len(classes), classes, "folder", str(listing.root), (3, height, width)
        )
    if name != "npy":
        raise UserError(f"--data-mode stream: {name} is read whole; streaming is for {' and '.join(STREAMABLE)} data")
    images, labels, classes, path = npy_split(data_dir, split)
    if images.shape[2:] != (height, width):
        raise UserError(
            f"{path}: images are {images.shape[2]}x{images.shape[3]} but the spec expects {height}x{width}"
            " (npy images are not resized)"
        )
    names = [f"class{i}" for i in range(classes)]
    shape = (int(images.shape[1]), height, width)
    return StreamDataset(tuple(range(len(images))), labels, classes, names, "npy", str(path), shape, path)


def decoded_size(name: str, data_dir: str | None, image_shape: tuple[int, int, int]) -> int | None:
    """Bytes the train and test splits take decoded in memory, found without decoding (None:
    not a streamable dataset, always read whole)."""
    if name not in STREAMABLE:
        return None
    total = 0
    for split in ("train", "test"):
        if name == "folder":
            count = len(list_folder(data_dir, split).files)
        else:
            count = len(npy_split(data_dir, split)[0])
        total += count * int(np.prod(image_shape))
    return total
