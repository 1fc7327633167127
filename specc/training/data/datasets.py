"""The dataset front door: `load_dataset`, `dataset_info`, `split_validation`, `synthetic`.

`dataset_info` answers without reading any image, so the trainer can refuse a spec whose
input shape or class count does not match the dataset before loading 180 MB.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from specc.errors import UserError, did_you_mean
from specc.training.data.base import ArrayDataset, check_split

if TYPE_CHECKING:
    from specc.training.data.stream import StreamDataset

Split = TypeVar("Split", bound="ArrayDataset | StreamDataset")

DATASETS = ("cifar10", "cifar100", "fashion-mnist", "mnist", "folder", "npy", "synthetic")
# (channels, classes, (H, W)) of the fixed-format datasets.
_FIXED_INFO = {
    "cifar10": (3, 10, (32, 32)),
    "cifar100": (3, 100, (32, 32)),
    "fashion-mnist": (1, 10, (28, 28)),
    "mnist": (1, 10, (28, 28)),
}
SYNTHETIC_DEFAULTS = {"channels": 3, "classes": 10, "size": None}
SYNTHETIC_SIZE = {"train": 512, "test": 128}
_SYNTHETIC_GRID = 4  # class patterns are 4x4 blocks: coarse enough for any conv net to see


def load_dataset(
    name: str,
    data_dir: str | None,
    split: str,
    *,
    image_size: tuple[int, int] | None = None,
    **options: int,
) -> ArrayDataset:
    """Load one split ("train" or "test") of a dataset as uint8 arrays in memory.

    `image_size` (H, W) is required for `folder` and `synthetic`; for the fixed-size
    datasets it is checked against the native size. `options` are accepted by `synthetic`
    only: channels=3, classes=10, size=512 (train) / 128 (test).
    """
    _check_name(name)
    check_split(name, split)
    if image_size is not None:
        image_size = _check_image_size(name, image_size)
    _check_options(name, options)
    if name in _FIXED_INFO:
        native = _FIXED_INFO[name][2]
        if image_size is not None and image_size != native:
            raise UserError(
                f"{name}: images are {native[0]}x{native[1]} but {image_size[0]}x{image_size[1]} "
                "was requested: change the spec's input size"
            )
    if name in ("cifar10", "cifar100"):
        from specc.training.data.cifar import load_cifar

        return load_cifar(name, data_dir, split)
    if name in ("mnist", "fashion-mnist"):
        from specc.training.data.idx import load_idx_dataset

        return load_idx_dataset(name, data_dir, split)
    if name == "folder":
        from specc.training.data.folder import load_folder

        return load_folder(data_dir, split, image_size)
    if name == "npy":
        from specc.training.data.arrays import load_npy

        return load_npy(data_dir, split)
    if image_size is None:
        raise UserError("synthetic: image_size is required: the spec's input size sets it")
    return synthetic(split, image_size, **options)


def dataset_info(name: str, data_dir: str | None = None, **options: int) -> tuple[int, int, tuple[int, int] | None]:
    """(channels, classes, (H, W) or None if any size works) without loading images.

    `folder` counts the class folders of `data_dir/train`, so it needs `data_dir`.
    """
    _check_name(name)
    _check_options(name, options)
    if name in _FIXED_INFO:
        return _FIXED_INFO[name]
    if name == "synthetic":
        merged = {**SYNTHETIC_DEFAULTS, **options}
        _check_positive(merged)
        return merged["channels"], merged["classes"], None
    if name == "npy":
        from specc.training.data.arrays import npy_info

        return npy_info(data_dir)
    if data_dir is None:
        raise UserError("folder: no data directory given: pass --data-dir holding train/<class>/")
    train = Path(data_dir) / "train"
    if not train.is_dir():
        raise UserError(f"folder: no train split in {data_dir}: expected train/<class>/<image>")
    return 3, sum(1 for p in train.iterdir() if p.is_dir()), None


def synthetic(
    split: str,
    image_size: tuple[int, int],
    *,
    channels: int = 3,
    classes: int = 10,
    size: int | None = None,
) -> ArrayDataset:
    """Deterministic, learnable random images: a per-class pattern plus per-image noise.

    The class patterns are the same for both splits (else the test set would be
    unlearnable); labels and noise are seeded per split. Each pattern is a coarse 4x4 grid of
    random levels, so both linear models and conv nets with pooling can separate the classes.
    """
    check_split("synthetic", split)
    _check_positive({"channels": channels, "classes": classes, "size": size})
    count = SYNTHETIC_SIZE[split] if size is None else size
    height, width = image_size
    pattern_rng = np.random.default_rng([0, channels, classes])
    grid = pattern_rng.normal(size=(classes, channels, _SYNTHETIC_GRID, _SYNTHETIC_GRID))
    rows = np.arange(height) * _SYNTHETIC_GRID // height
    cols = np.arange(width) * _SYNTHETIC_GRID // width
    patterns = (128 + 48 * grid[:, :, rows[:, None], cols[None, :]]).astype(np.float32)
    rng = np.random.default_rng([1 if split == "train" else 2, channels, classes, count])
    labels = rng.permutation(np.arange(count) % classes).astype(np.int64)  # balanced
    images = np.empty((count, channels, height, width), dtype=np.uint8)  # (N, C, H, W)
    for start in range(0, count, 4096):  # chunks keep the float temporaries small
        stop = min(start + 4096, count)
        noise = rng.standard_normal((stop - start, channels, height, width), dtype=np.float32)
        chunk = patterns[labels[start:stop]] + 40 * noise
        images[start:stop] = np.clip(np.rint(chunk), 0, 255)
    names = [f"class{i}" for i in range(classes)]
    source = f"synthetic(split={split}, channels={channels}, classes={classes}, size={count})"
    return ArrayDataset(images, labels, classes, names, "synthetic", source)


def split_validation(ds: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off a stratified validation set of round(fraction * N) samples, deterministic
    in `seed`. Each class gives its share; leftover slots go to the largest remainders. A
    streamed split (`StreamDataset`) is divided exactly as the same split in memory."""
    if not 0 < fraction < 1:
        raise UserError(f"{ds.name}: validation fraction {fraction} must be between 0 and 1")
    target = round(fraction * len(ds))
    if target == 0 or target == len(ds):
        raise UserError(f"{ds.name}: validation fraction {fraction} of {len(ds)} samples leaves an empty split")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(ds))
    # A stable sort by label keeps the random order within each class.
    by_class = shuffled[np.argsort(ds.labels[shuffled], kind="stable")]
    counts = np.bincount(ds.labels, minlength=ds.classes)
    exact = fraction * counts
    take = np.floor(exact).astype(np.int64)
    leftover = target - int(take.sum())
    order = np.argsort(-(exact - take), kind="stable")  # largest remainder first
    take[order[:leftover]] += 1
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    is_val = np.zeros(len(ds), dtype=bool)
    for start, n in zip(starts, take):
        is_val[by_class[start : start + n]] = True
    parts = []
    for mask, part in ((~is_val, "train"), (is_val, "val")):
        source = f"{ds.source} [split_validation fraction={fraction} seed={seed}: {part}]"
        if isinstance(ds, ArrayDataset):
            parts.append(replace(ds, images=ds.images[mask], labels=ds.labels[mask], source=source))
        else:
            parts.append(ds.subset(mask, source))
    return parts[0], parts[1]


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise UserError(
            f"unknown dataset '{name}': expected one of {', '.join(DATASETS)}" + did_you_mean(name, DATASETS)
        )


def _check_options(name: str, options: dict[str, int]) -> None:
    allowed = SYNTHETIC_DEFAULTS if name == "synthetic" else {}
    for key in options:
        if key not in allowed:
            expected = f"expected {', '.join(allowed)}" if allowed else "it takes none"
            raise UserError(f"{name}: unknown dataset option '{key}': {expected}" + did_you_mean(key, allowed))


def _check_positive(options: dict[str, int | None]) -> None:
    for key, value in options.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"synthetic: option '{key}' must be a positive integer, got {value!r}")


def _check_image_size(name: str, image_size: tuple[int, int]) -> tuple[int, int]:
    size = tuple(image_size)
    integral = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    if len(size) != 2 or not integral or min(size) < 1:
        raise UserError(f"{name}: image_size {image_size!r} must be two positive integers (H, W)")
    return int(size[0]), int(size[1])
