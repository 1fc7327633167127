"""ImageNet-style image folders: `data_dir/train/<class>/*.png`, `data_dir/val/<class>/...`.

Every image is decoded with pillow, converted to RGB, its shorter side resized to
max(image_size) and centre-cropped to image_size, so the whole split fits one uint8 array.
Class indices come from the sorted class folders of `train`, so train and test agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specc.errors import UserError
from specc.training.data.base import ArrayDataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}


def load_folder(data_dir: str | None, split: str, image_size: tuple[int, int] | None) -> ArrayDataset:
    """Read one split of an image-folder dataset as (N, 3, H, W) uint8, H, W = image_size."""
    if image_size is None:
        raise UserError("folder: image_size is required: the spec's input size sets it")
    listing = list_folder(data_dir, split)
    height, width = image_size
    array = np.empty((len(listing.files), 3, height, width), dtype=np.uint8)  # (N, C, H, W)
    for i, path in enumerate(listing.files):
        array[i] = decode_image(path, (height, width)).transpose(2, 0, 1)
    return ArrayDataset(array, listing.labels, len(listing.classes), listing.classes, "folder", str(listing.root))


@dataclass(frozen=True, eq=False)
class FolderListing:
    """The images of one split, in a fixed order (class folders sorted, files sorted within)."""

    root: Path  # the split's folder
    files: list[Path]
    labels: np.ndarray  # (N,) int64
    classes: list[str]  # the class names, from the train split's folders


def list_folder(data_dir: str | None, split: str) -> FolderListing:
    """List one split of `data_dir/train/<class>/...` without decoding any image."""
    if data_dir is None:
        raise UserError("folder: no data directory given: pass --data-dir holding train/<class>/")
    root = Path(data_dir)
    split_dir = _split_dir(root, split)
    class_source = root / "train" if (root / "train").is_dir() else split_dir
    class_names = _class_names(class_source)
    index = {n: i for i, n in enumerate(class_names)}
    files: list[Path] = []
    labels: list[int] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if class_dir.name not in index:
            raise UserError(
                f"{class_dir}: class '{class_dir.name}' is not among the {len(class_names)} classes of {class_source}"
            )
        images = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(f"{class_dir}: no images: expected {_suffix_list()} files")
        files += images
        labels += [index[class_dir.name]] * len(images)
    if not files:
        raise UserError(f"{split_dir}: no class folders: expected {split_dir}/<class>/<image>")
    return FolderListing(split_dir, files, np.asarray(labels, dtype=np.int64), class_names)


def decode_image(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """Decode one image to (H, W, 3) uint8: shorter side to max(image_size), centre crop."""
    from PIL import Image, UnidentifiedImageError  # lazy: only this dataset needs pillow

    height, width = image_size
    target = max(height, width)
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")  # decodes fully, so truncation shows up here
            w, h = image.size
            scale = target / min(w, h)
            new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = (new_w - width) // 2, (new_h - height) // 2
            image = image.crop((left, top, left + width, top + height))
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise UserError(f"{path}: cannot decode image: {err}") from None


def _split_dir(root: Path, split: str) -> Path:
    names = ("train",) if split == "train" else ("val", "test")
    for name in names:
        if (root / name).is_dir():
            return root / name
    where = f"{root} (no such directory)" if not root.is_dir() else str(root)
    expected = " or ".join(f"{n}/<class>/<image>" for n in names)
    raise UserError(f"folder: no {split} split in {where}: expected {expected}")


def _class_names(directory: Path) -> list[str]:
    names = sorted(p.name for p in directory.iterdir() if p.is_dir())
    if not names:
        raise UserError(f"{directory}: no class folders: expected {directory}/<class>/<image>")
    return names


def _suffix_list() -> str:
    return "/".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
