"""MNIST and Fashion-MNIST from IDX files, gzipped or not.

IDX is a big-endian header (two zero bytes, a type byte, the number of dimensions, then one
uint32 per dimension) followed by the raw values. Both magic and size are checked, so a
truncated download fails here with the file's name instead of as a reshape error later.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from specc.errors import UserError
from specc.training.data.base import ArrayDataset, check_labels, read_file_bytes

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
MAX_IDX_BYTES = 16 * 2**30  # no image dataset specc trains on comes near; a larger header is damaged


def load_idx_dataset(name: str, data_dir: str | None, split: str) -> ArrayDataset:
    """Read one split of `mnist` or `fashion-mnist` as (N, 1, H, W) uint8 images."""
    images_path, labels_path = _find_files(name, data_dir, split)
    images = read_idx(images_path, ndim=3)  # (N, H, W)
    if images.shape[1:] != (28, 28):
        height, width = images.shape[1:]
        raise UserError(f"{images_path}: the images are {height}x{width}: {_TITLES[name]} images are 28x28")
    labels = read_idx(labels_path, ndim=1).astype(np.int64)  # (N,)
    if len(labels) != len(images):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
    check_labels(labels_path, labels, 10)
    names = FASHION_LABELS if name == "fashion-mnist" else DIGIT_LABELS
    source = f"{images_path},{labels_path}"
    return ArrayDataset(images[:, None], labels, 10, list(names), name, source)


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with `ndim` dimensions (gunzipped if it ends in .gz).

    The header is checked before any data is unpacked: its dimensions are multiplied exactly
    (no integer overflow can make a huge header look small), and a file never makes specc
    unpack more than the header declares (a gzip bomb stops at the declared size)."""
    raw = read_file_bytes(path)
    if not raw:
        raise UserError(f"{path}: empty file: expected an IDX file (re-download it)")
    header = 4 + 4 * ndim
    head = _gunzip(path, raw, header) if path.suffix == ".gz" else raw[:header]
    expected_magic = f"0x{_UBYTE << 8 | ndim:08x}"
    # Magic first: a labels file passed as images is "wrong file", not "truncated".
    magic = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
    if magic is not None and magic != _UBYTE << 8 | ndim:
        raise UserError(
            f"{path}: bad IDX magic 0x{magic:08x}: expected {expected_magic} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    if len(head) < header:
        raise UserError(f"{path}: truncated IDX header ({len(head)} bytes): expected {header}")
    shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dims = "x".join(map(str, shape))
    size = math.prod(shape)  # exact: Python integers do not overflow
    if size == 0:
        raise UserError(f"{path}: the IDX header says {dims}: no data in it")
    if size > MAX_IDX_BYTES:
        raise UserError(
            f"{path}: the IDX header says {dims} = {size} bytes, more than an image dataset can be"
            f" ({MAX_IDX_BYTES // 2**30} GiB at most): a damaged header"
        )
    data = _gunzip(path, raw, header + size + 1) if path.suffix == ".gz" else raw
    if len(data) - header != size:
        kind = "truncated" if len(data) - header < size else "trailing bytes in"
        # A gzip file is unpacked only one byte past the declared size: "more than" is all we know.
        found = f"more than {size}" if kind != "truncated" and path.suffix == ".gz" else len(data) - header
        raise UserError(f"{path}: {kind} IDX data: header says {dims} = {size} bytes, file has {found}")
    # frombuffer views the immutable bytes; copy so the dataset owns writable memory.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _gunzip(path: Path, raw: bytes, limit: int) -> bytes:
    """At most the first `limit` bytes of the gzip data `raw` (all its members, in order)."""
    out = bytearray()
    try:
        while raw and len(out) < limit:
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
            out += stream.decompress(raw, limit - len(out))
            if not stream.eof:
                if stream.unconsumed_tail or len(out) >= limit:
                    break  # stopped at the limit, not at the end of the data
                raise UserError(f"{path}: truncated or corrupt gzip: the compressed data ends early")
            raw = stream.unused_data
    except zlib.error as err:
        raise UserError(f"{path}: truncated or corrupt gzip: {err}") from None
    return bytes(out)


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
