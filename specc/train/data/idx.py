"""MNIST and Fashion-MNIST from IDX files, gzipped or not.

IDX is a big-endian header (two zero bytes, a type byte, the number of dimensions, then one
uint32 per dimension) followed by the raw values. Both magic and size are checked, so a
truncated download fails here with the file's name instead of as a reshape error later.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from specc.errors import UserError
from specc.train.data.base import ArrayDataset, check_labels, read_file_bytes

FASHION_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_LABELS = [str(d) for d in range(10)]

# Where Debian's `dataset-fashion-mnist` package installs the files, then common manual spots.
FASHION_DEFAULT_DIRS = (
    "/usr/share/datasets/fashion-mnist",
    "/usr/local/share/datasets/fashion-mnist",
    "/usr/share/fashion-mnist",
)
_SUBDIRS = {"mnist": ("", "mnist", "MNIST/raw"), "fashion-mnist": ("", "fashion-mnist", "FashionMNIST/raw")}
_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
_PREFIX = {"train": "train", "test": "t10k"}
_UBYTE = 0x08


def load_idx_dataset(name: str, data_dir: str | None, split: str) -> ArrayDataset:
    """Read one split of `mnist` or `fashion-mnist` as (N, 1, H, W) uint8 images."""
    images_path, labels_path = _find_files(name, data_dir, split)
    images = read_idx(images_path, ndim=3)  # (N, H, W)
    labels = read_idx(labels_path, ndim=1).astype(np.int64)  # (N,)
    if len(labels) != len(images):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
    check_labels(labels_path, labels, 10)
    names = FASHION_LABELS if name == "fashion-mnist" else DIGIT_LABELS
    source = f"{images_path},{labels_path}"
    return ArrayDataset(images[:, None], labels, 10, list(names), name, source)


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with `ndim` dimensions (gunzipped if it ends in .gz)."""
    raw = read_file_bytes(path)
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise UserError(f"{path}: truncated or corrupt gzip: {err}") from None
    header = 4 + 4 * ndim
    expected_magic = f"0x{_UBYTE << 8 | ndim:08x}"
    # Magic first: a labels file passed as images is "wrong file", not "truncated".
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic is not None and magic != _UBYTE << 8 | ndim:
        raise UserError(
            f"{path}: bad IDX magic 0x{magic:08x}: expected {expected_magic} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header ({len(raw)} bytes): expected {header}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        kind = "truncated" if len(raw) - header < size else "trailing bytes in"
        raise UserError(
            f"{path}: {kind} IDX data: header says {'x'.join(map(str, shape))} = {size} bytes, "
            f"file has {len(raw) - header}"
        )
    # frombuffer views the immutable bytes; copy so the dataset owns writable memory.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find_files(name: str, data_dir: str | None, split: str) -> tuple[Path, Path]:
    """The images and labels files of `split`, raw preferred over gzipped."""
    title = _TITLES[name]
    prefix = _PREFIX[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    expected = f"{stems[0]}[.gz] and {stems[1]}[.gz]"
    if data_dir is None:
        if name == "mnist":
            raise UserError(f"mnist: no data directory given: pass --data-dir holding {expected}")
        roots = [Path(d) for d in FASHION_DEFAULT_DIRS]
        hint = " (install Debian's dataset-fashion-mnist or pass --data-dir)"
    else:
        roots = [Path(data_dir)]
        hint = ""
    for root in roots:
        for sub in _SUBDIRS[name]:
            found = [_existing(root / sub / stem) for stem in stems]
            if found[0] and found[1]:
                return found[0], found[1]
            if found[0] or found[1]:  # half a dataset: name the missing half
                missing = stems[1] if found[0] else stems[0]
                raise UserError(f"{name}: incomplete {title} in {root / sub}: missing {missing}[.gz]")
    where = ", ".join(str(r) for r in roots)
    if data_dir is not None and not roots[0].is_dir():
        where += " (no such directory)"
    raise UserError(f"{name}: no {title} {split} split found in {where}: expected {expected}{hint}")


def _existing(stem_path: Path) -> Path | None:
    """`stem_path` or `stem_path.gz`, whichever exists (raw first: it reads faster)."""
    for candidate in (stem_path, stem_path.with_name(stem_path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None
