"""Fitting the input preprocessing on a training set (numpy). What a fitted one is, how it is
stored and applied lives in the core (`specc.preprocessing`, re-exported here), so that
`specc predict` needs no training code.

- "normalize" (the default): per-channel mean/std of pixels scaled to [0, 1], exact from
  256-bin histograms.
- "gcn_zca": the All-CNN paper's global contrast normalisation followed by ZCA whitening,
  as pylearn2 did it (`global_contrast_normalize(X, scale=55.)` then `ZCA`). The ZCA matrix
  is V diag(1/sqrt(lambda + eps)) V^T of the covariance of the GCN'd training images; it is
  symmetric, so `v @ matrix` and `matrix @ v` agree.
- "none": pixels scaled to [0, 1], nothing else.
"""

from __future__ import annotations

import math

import numpy as np

from specc.errors import UserError, did_you_mean
from specc.preprocessing import (
    CHUNK,
    FORMAT_VERSION,
    GCN_DEFAULTS,
    KINDS,
    ZCA_DEFAULT_EPS,
    Preprocessing,
    check_kind,
    global_contrast_normalize,
)

__all__ = [
    "FORMAT_VERSION",
    "GCN_DEFAULTS",
    "KINDS",
    "ZCA_DEFAULT_EPS",
    "Preprocessing",
    "fit_preprocessing",
    "global_contrast_normalize",
]

# A channel whose std is below one grey level is effectively constant; dividing by less
# would turn quantisation noise into large inputs.
_MIN_STD = 1.0 / 255


def fit_preprocessing(kind: str, images: np.ndarray, **opts: float) -> Preprocessing:
    """Fit on training images (N, C, H, W) uint8. `gcn_zca` takes the options scale,
    sqrt_bias, min_divisor (GCN) and eps (ZCA); the other kinds take none."""
    check_kind(kind)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"fit expects (N, C, H, W) uint8 images, got {images.dtype} {images.shape}")
    allowed = {*GCN_DEFAULTS, "eps"} if kind == "gcn_zca" else set()
    for key in opts:
        if key not in allowed:
            expected = f"expected {', '.join(sorted(allowed))}" if allowed else "it takes none"
            raise UserError(f"preprocessing {kind}: unknown option '{key}': {expected}" + did_you_mean(key, allowed))
    c, h, w = (int(d) for d in images.shape[1:])
    shape = (c, h, w)
    if kind == "none":
        return Preprocessing("none", shape)
    if kind == "normalize":
        mean, std = _channel_stats(images)
        return Preprocessing("normalize", shape, mean=mean, std=np.maximum(std, _MIN_STD).astype(np.float32))
    gcn = {k: float(opts.get(k, v)) for k, v in GCN_DEFAULTS.items()}
    eps = float(opts.get("eps", ZCA_DEFAULT_EPS))
    mean, matrix = _fit_zca(images, gcn, eps)
    return Preprocessing("gcn_zca", shape, mean=mean, matrix=matrix, gcn=gcn, eps=eps)


def _fit_zca(images: np.ndarray, gcn: dict[str, float], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """ZCA mean (D,) and whitening matrix (D, D) of the GCN'd images, both float32."""
    count = len(images)
    dim = math.prod(images.shape[1:])
    total = np.zeros(dim)
    products = np.zeros((dim, dim))
    for start in range(0, count, CHUNK):
        chunk = images[start : start + CHUNK].reshape(-1, dim).astype(np.float64)
        normalized = global_contrast_normalize(chunk, **gcn)
        total += normalized.sum(axis=0)
        # float32 product per chunk is ~2x faster; the float64 sum keeps the total exact enough.
        as32 = normalized.astype(np.float32)
        products += as32.T @ as32
    mean = total / count
    covariance = products / count - np.outer(mean, mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 0.0, None)  # rounding makes the null direction < 0
    matrix = (eigenvectors / np.sqrt(eigenvalues + eps)) @ eigenvectors.T
    return mean.astype(np.float32), matrix.astype(np.float32)


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std on [0, 1] from 256-bin histograms, so CIFAR's 150M
    pixels never become a float array."""
    return stats_from_histograms(channel_histograms(images))


def channel_histograms(images: np.ndarray) -> np.ndarray:
    """(C, 256) int64: how many pixels of each channel have each value. Histograms of parts of
    a dataset add up to the whole's, so a streamed dataset is fitted exactly as one in memory."""
    return np.stack([np.bincount(images[:, c].ravel(), minlength=256) for c in range(images.shape[1])]).astype(np.int64)


def stats_from_histograms(histograms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std) on [0, 1], float32, of the pixels counted in `histograms` (C, 256)."""
    values = np.arange(256, dtype=np.float64) / 255
    means, stds = [], []
    for histogram in histograms:
        count = histogram.sum()
        mean = (histogram * values).sum() / count
        variance = (histogram * values**2).sum() / count - mean**2
        means.append(mean)
        stds.append(math.sqrt(max(variance, 0.0)))
    return np.asarray(means, dtype=np.float32), np.asarray(stds, dtype=np.float32)


def normalize_from_histograms(histograms: np.ndarray, shape: tuple[int, int, int]) -> Preprocessing:
    """The "normalize" preprocessing of a dataset whose channel histograms are `histograms`."""
    mean, std = stats_from_histograms(histograms)
    return Preprocessing("normalize", shape, mean=mean, std=np.maximum(std, _MIN_STD).astype(np.float32))
