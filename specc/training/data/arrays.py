"""Arrays on disk: `data_dir/{train,test}_images.npy` (N, C, H, W) uint8 and
`data_dir/{train,test}_labels.npy` (N,) integers.

The image file is opened memory-mapped, so a split larger than memory is read row by row
(`--data-mode stream`) and only the rows a batch needs are ever paged in. Images are taken as
they are: their size must be the spec's input size (no resizing). Classes are numbered
0..K-1, K = the largest training label + 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specc.errors import UserError
from specc.training.data.base import ArrayDataset, check_labels, check_split


def npy_paths(data_dir: str | None, split: str) -> tuple[Path, Path]:
    """(images, labels) files of one split; refuses a missing folder or file in one line."""
    check_split("npy", split)
    if data_dir is None:
        raise UserError("npy: no data directory given: pass --data-dir holding train_images.npy and train_labels.npy")
    root = Path(data_dir)
    paths = (root / f"{split}_images.npy", root / f"{split}_labels.npy")
    for path in paths:
        if not path.is_file():
            raise UserError(f"npy: {path}: no such file (expected {split}_images.npy and {split}_labels.npy)")
    return paths


def open_images(path: Path) -> np.ndarray:
    """The image array of `path`, memory-mapped read-only: (N, C, H, W) uint8, checked."""
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read as a .npy array: {err}") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UserError(f"{path}: holds {images.dtype} of shape {images.shape}: expected (N, C, H, W) uint8")
    return images


def read_labels(path: Path, count: int) -> np.ndarray:
    """(count,) int64 labels from `path`, refused unless they are whole numbers >= 0."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read as a .npy array: {err}") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise UserError(f"{path}: holds {labels.dtype} of shape {labels.shape}: expected (N,) integers")
    if len(labels) != count:
        raise UserError(f"{path}: {len(labels)} labels for {count} images")
    if len(labels) and labels.min() < 0:
        raise UserError(f"{path}: label {int(labels.min())} is negative")
    return labels.astype(np.int64)


def npy_info(data_dir: str | None) -> tuple[int, int, tuple[int, int]]:
    """(channels, classes, (H, W)) from the training files' headers and labels."""
    images_path, labels_path = npy_paths(data_dir, "train")
    images = open_images(images_path)
    labels = read_labels(labels_path, len(images))
    _, channels, height, width = images.shape
    return channels, int(labels.max()) + 1 if len(labels) else 0, (height, width)


def npy_split(data_dir: str | None, split: str) -> tuple[np.ndarray, np.ndarray, int, Path]:
    """(memory-mapped images, labels, classes, images path) of one split, labels checked
    against the training split's classes."""
    images_path, labels_path = npy_paths(data_dir, split)
    images = open_images(images_path)
    labels = read_labels(labels_path, len(images))
    classes = npy_info(data_dir)[1]
    check_labels(labels_path, labels, classes)
    return images, labels, classes, images_path


def load_npy(data_dir: str | None, split: str) -> ArrayDataset:
    """One split read whole into memory (the in-memory data mode)."""
    images, labels, classes, path = npy_split(data_dir, split)
    names = [f"class{i}" for i in range(classes)]
    # a copy: the memory map is read-only (torch warns of undefined behaviour) and not in memory
    return ArrayDataset(np.array(images, order="C"), labels, classes, names, "npy", str(path))
