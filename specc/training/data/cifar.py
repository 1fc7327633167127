"""CIFAR-10 and CIFAR-100 readers, for both the python-pickle and the binary distributions.

`data_dir` may be the extracted folder itself (`.../cifar-10-batches-py`) or its parent.
Pickles go through `safe_pickle`, never plain `pickle.load`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specc.errors import UserError
from specc.training.data.base import (
    ArrayDataset,
    check_labels,
    format_paths,
    read_file_bytes,
)
from specc.training.data.safe_pickle import load_pickle

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class _Layout:
    """Where one distribution keeps its files and how to describe them in an error."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    expected: str  # the file list as it appears in the "not found" message


@dataclass(frozen=True)
class _Variant:
    """CIFAR-10 or CIFAR-100: the distributions and the record keys that differ."""

    title: str
    classes: int
    label_key: str  # key of the labels in a pickled batch
    names_key: str  # key of the class names in the pickled meta
    label_byte: int  # which leading byte of a binary record is the label used
    header_bytes: int  # label bytes before the pixels of a binary record
    pickle_layout: _Layout
    binary_layout: _Layout


_TRAIN10 = tuple(f"data_batch_{i}" for i in range(1, 6))
VARIANTS = {
    "cifar10": _Variant(
        title="CIFAR-10",
        classes=10,
        label_key="labels",
        names_key="label_names",
        label_byte=0,
        header_bytes=1,
        pickle_layout=_Layout(
            "cifar-10-batches-py",
            _TRAIN10,
            ("test_batch",),
            "batches.meta",
            "cifar-10-batches-py/{data_batch_1..5,test_batch}",
        ),
        binary_layout=_Layout(
            "cifar-10-batches-bin",
            tuple(f"{n}.bin" for n in _TRAIN10),
            ("test_batch.bin",),
            "batches.meta.txt",
            "cifar-10-batches-bin/{data_batch_1..5.bin,test_batch.bin}",
        ),
    ),
    "cifar100": _Variant(
        title="CIFAR-100",
        classes=100,
        label_key="fine_labels",
        names_key="fine_label_names",
        label_byte=1,  # a record is: coarse label, fine label, 3072 pixels
        header_bytes=2,
        pickle_layout=_Layout("cifar-100-python", ("train",), ("test",), "meta", "cifar-100-python/{train,test}"),
        binary_layout=_Layout(
            "cifar-100-binary",
            ("train.bin",),
            ("test.bin",),
            "fine_label_names.txt",
            "cifar-100-binary/{train.bin,test.bin}",
        ),
    ),
}


def load_cifar(name: str, data_dir: str | None, split: str) -> ArrayDataset:
    """Read one split of CIFAR-10 (`name="cifar10"`) or CIFAR-100 (`"cifar100"`)."""
    variant = VARIANTS[name]
    if data_dir is None:
        raise UserError(
            f"{name}: no data directory given: pass --data-dir pointing at "
            f"{variant.pickle_layout.folder} or {variant.binary_layout.folder} (or their parent)"
        )
    folder, layout = _find_layout(name, variant, Path(data_dir), split)
    paths = [folder / f for f in (layout.train if split == "train" else layout.test)]
    if layout is variant.pickle_layout:
        parts = [_read_pickle_batch(p, variant) for p in paths]
        label_names = _read_pickle_names(folder / layout.meta, variant)
    else:
        parts = [_read_binary_batch(p, variant) for p in paths]
        label_names = _read_text_names(folder / layout.meta, variant)
    # CIFAR-100 is one file per split: skip the copy a one-part concatenate would make.
    images = parts[0][0] if len(parts) == 1 else np.concatenate([i for i, _ in parts])
    labels = parts[0][1] if len(parts) == 1 else np.concatenate([lab for _, lab in parts])
    return ArrayDataset(images, labels, variant.classes, label_names, name, format_paths(paths))


def _find_layout(name: str, variant: _Variant, root: Path, split: str) -> tuple[Path, _Layout]:
    """The folder holding the split's files: `root/<folder>` or `root` itself."""
    layouts = (variant.pickle_layout, variant.binary_layout)
    for layout in layouts:
        needed = layout.train if split == "train" else layout.test
        for folder in (root / layout.folder, root):
            if all((folder / f).is_file() for f in (*needed, layout.meta)):
                return folder, layout
    # Nothing complete: if some files of a layout are there, say which ones are missing,
    # because "not found" would send the user looking in the wrong place.
    for layout in layouts:
        needed = (*(layout.train if split == "train" else layout.test), layout.meta)
        for folder in (root / layout.folder, root):
            present = [f for f in (*layout.train, *layout.test, layout.meta) if (folder / f).is_file()]
            if present:
                missing = [f for f in needed if not (folder / f).is_file()]
                raise UserError(f"{name}: incomplete {variant.title} in {folder}: missing {', '.join(missing)}")
    where = f"{root} (no such directory)" if not root.is_dir() else str(root)
    raise UserError(
        f"{name}: no {variant.title} found in {where}: expected "
        f"{variant.pickle_layout.expected} or {variant.binary_layout.expected}"
    )


def _pickle_dict(path: Path, what: str) -> dict[str, object]:
    """Load a pickled dict; Python 2 wrote str keys that now come back as bytes."""
    loaded = load_pickle(path)
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a pickled dict ({what}), got {type(loaded).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in loaded.items()}


def _read_pickle_batch(path: Path, variant: _Variant) -> tuple[np.ndarray, np.ndarray]:
    what = f"a {variant.title} batch with 'data' and '{variant.label_key}'"
    batch = _pickle_dict(path, what)
    for key in ("data", variant.label_key):
        if key not in batch:
            raise UserError(f"{path}: missing key '{key}': expected {what}")
    data = batch["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise UserError(f"{path}: 'data' is not a uint8 matrix: expected (N, {PIXELS}) uint8")
    if data.shape[1] != PIXELS:
        raise UserError(f"{path}: 'data' has shape {data.shape}: expected (N, {PIXELS})")
    try:
        labels = np.asarray(batch[variant.label_key], dtype=np.int64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: '{variant.label_key}' is not a list of integers") from None
    if labels.shape != (len(data),):
        raise UserError(f"{path}: '{variant.label_key}' has {labels.size} entries for {len(data)} images")
    check_labels(path, labels, variant.classes)
    return data.reshape(-1, 3, 32, 32), labels


def _read_pickle_names(path: Path, variant: _Variant) -> list[str]:
    meta = _pickle_dict(path, f"{variant.title} meta with '{variant.names_key}'")
    names = meta.get(variant.names_key)
    if not isinstance(names, list) or len(names) != variant.classes:
        raise UserError(f"{path}: expected '{variant.names_key}' to list {variant.classes} class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _read_binary_batch(path: Path, variant: _Variant) -> tuple[np.ndarray, np.ndarray]:
    record = variant.header_bytes + PIXELS
    raw = read_file_bytes(path)
    if len(raw) == 0 or len(raw) % record:
        raise UserError(
            f"{path}: truncated or not {variant.title} binary: {len(raw)} bytes is not a whole "
            f"number of {record}-byte records"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)  # (N, record)
    labels = records[:, variant.label_byte].astype(np.int64)
    check_labels(path, labels, variant.classes)
    # Slicing off the header leaves a strided view of a read-only buffer; copy it once.
    images = np.ascontiguousarray(records[:, variant.header_bytes :]).reshape(-1, 3, 32, 32)
    return images, labels


def _read_text_names(path: Path, variant: _Variant) -> list[str]:
    text = read_file_bytes(path).decode("utf-8", errors="replace")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != variant.classes:
        raise UserError(f"{path}: expected {variant.classes} class names, one per line, found {len(names)}")
    return names
