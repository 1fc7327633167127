"""Datasets, preprocessing and on-device batching for `specc train`.

The readers and preprocessing are numpy-only; the torch parts (`TensorLoader`,
`AugmentConfig`, `torch_preprocess`, `flip_batch`, `translate_batch`) load on first use, so
importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from specc.training.data.base import ArrayDataset
from specc.training.data.datasets import (
    DATASETS,
    dataset_info,
    load_dataset,
    split_validation,
    synthetic,
)
from specc.training.data.preprocess import KINDS as PREPROCESSING_KINDS
from specc.training.data.preprocess import Preprocessing, fit_preprocessing

if TYPE_CHECKING:  # for type checkers only: at run time these load on first use (__getattr__)
    from specc.training.data.loader import AugmentConfig, TensorLoader, flip_batch, torch_preprocess, translate_batch

_TORCH_NAMES = ("AugmentConfig", "TensorLoader", "flip_batch", "torch_preprocess", "translate_batch")

__all__ = [
    "DATASETS",
    "PREPROCESSING_KINDS",
    "ArrayDataset",
    "Preprocessing",
    "dataset_info",
    "fit_preprocessing",
    "load_dataset",
    "split_validation",
    "synthetic",
    # _TORCH_NAMES, loaded on first use (spelled out: type checkers do not read a `*`)
    "AugmentConfig",
    "TensorLoader",
    "flip_batch",
    "torch_preprocess",
    "translate_batch",
]


def __getattr__(name: str):
    # Only the loader needs torch; `specc check` must stay instant (house rule 1).
    if name in _TORCH_NAMES:
        from specc.training.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
