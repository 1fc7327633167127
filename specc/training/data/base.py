"""The in-memory dataset every reader returns, and the small helpers the readers share.

A dataset is small enough to live in memory as one uint8 array (CIFAR is 180 MB), so the
trainer can move it to the device in one copy and batch it there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specc.errors import UserError

SPLITS = ("train", "test")


# eq=False: the generated __eq__ would compare arrays elementwise and raise on `==`.
@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A whole split in memory: `images` (N, C, H, W) uint8, `labels` (N,) int64."""

    images: np.ndarray
    labels: np.ndarray
    classes: int
    label_names: list[str]
    name: str
    source: str  # the path(s) read, recorded in run configs

    def __post_init__(self) -> None:
        # Readers build these, so a violation is a bug in specc, not a user mistake.
        assert self.images.dtype == np.uint8 and self.images.ndim == 4, self.images.shape
        assert self.labels.dtype == np.int64 and self.labels.shape == (len(self.images),)
        assert len(self.label_names) == self.classes

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def fingerprint(self) -> str:
        """First 16 hex digits of a sha256 over shape, dtype and bytes of images and labels.

        Recorded in run configs so a result can be tied to the exact data it saw.
        """
        digest = hashlib.sha256()
        for array in (self.images, self.labels):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.shape}|{array.dtype.str}|".encode())
            digest.update(array.data.cast("B"))
        return digest.hexdigest()[:16]


def check_split(dataset: str, split: str) -> None:
    """Refuse any split other than "train" or "test"."""
    if split not in SPLITS:
        raise UserError(f"{dataset}: unknown split '{split}': expected 'train' or 'test'")


def read_file_bytes(path: Path) -> bytes:
    """Read a whole file, turning OS errors into one line naming the file."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None


def check_labels(path: Path | str, labels: np.ndarray, classes: int) -> None:
    """Refuse labels outside 0..classes-1, naming the file they came from."""
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise UserError(f"{path}: label {bad} out of range: expected 0..{classes - 1}")


def format_paths(paths: list[Path]) -> str:
    """Join the paths of a multi-file source, shortened to their common folder."""
    if len(paths) == 1:
        return str(paths[0])
    parent = paths[0].parent
    if all(p.parent == parent for p in paths):
        return f"{parent}/{{{','.join(p.name for p in paths)}}}"
    return ",".join(str(p) for p in paths)
