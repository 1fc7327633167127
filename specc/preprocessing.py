"""Input preprocessing: the formula a trained model's inputs go through, and its metadata.

This is the consumer's half (what `specc predict`, `specc eval`, `specc visualize` and the
ONNX metadata need): a fitted `Preprocessing`, its plain-data form (`to_dict`/`from_dict`),
and `apply`. Fitting it on a training set is the trainer's (`specc.training.data.preprocess`).
numpy is imported inside the functions that compute, so the core imports without it.

Kinds:
- "normalize" (the default): per-channel mean/std of pixels scaled to [0, 1].
- "gcn_zca": the All-CNN paper's global contrast normalisation followed by ZCA whitening,
  as pylearn2 did it (`global_contrast_normalize(X, scale=55.)` then `ZCA`).
- "none": pixels scaled to [0, 1], nothing else.

`to_dict()` is plain JSON data (lists, floats, strings) with everything a consumer such as
an ONNX runtime caller needs. Pixels are the uint8 values of one image in (C, H, W) order,
as floats. Every dict has:

    {"format": 1, "kind": str, "shape": [C, H, W], "pixel_scale": float, ...}

and the consumer computes `x = pixels * pixel_scale`, then by kind:

- "none":      y = x.                                             (pixel_scale = 1/255)
- "normalize": y[c] = (x[c] - mean[c]) / std[c]                   (pixel_scale = 1/255)
               extra keys: "mean": [C floats], "std": [C floats]
- "gcn_zca":   (pixel_scale = 1, i.e. raw 0..255 values, like pylearn2)
               v = x.flatten()                          # D = C*H*W values, CHW order
               v = v - mean(v)
               n = sqrt(gcn.sqrt_bias + sum(v**2)) / gcn.scale
               if n < gcn.min_divisor: n = 1
               v = v / n                                # every image gets L2 norm gcn.scale
               y = ((v - zca.mean) @ zca.matrix).reshape(C, H, W)
               extra keys: "gcn": {"scale", "sqrt_bias", "min_divisor"},
                           "zca": {"eps", "mean": [D floats], "matrix": [[D floats]] * D}

Note on GCN: pylearn2 (use_std=False) divides by the root of the *sum* of squares, not the
mean, so scale=55 gives a per-pixel RMS of 55/sqrt(D) (about 1 for 3x32x32); we follow it.
The ZCA matrix is V diag(1/sqrt(lambda + eps)) V^T of the covariance of the GCN'd training
images; it is symmetric, so `v @ matrix` and `matrix @ v` agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from specc.errors import UserError, did_you_mean

if TYPE_CHECKING:
    import numpy as np

FORMAT_VERSION = 1
KINDS = ("normalize", "gcn_zca", "none")
GCN_DEFAULTS = {"scale": 55.0, "sqrt_bias": 0.0, "min_divisor": 1e-8}
ZCA_DEFAULT_EPS = 1e-2
CHUNK = 4096  # rows per chunk: bounds the float temporaries for 50k x 3072 inputs


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """A fitted preprocessing; made by `specc.training.data.preprocess.fit_preprocessing`
    or `from_dict`, used
    with `apply`."""

    kind: str
    shape: tuple[int, int, int]  # (C, H, W) of the images it was fitted on
    mean: np.ndarray | None = None  # normalize: (C,) on [0, 1]; gcn_zca: (D,) ZCA mean
    std: np.ndarray | None = None  # normalize: (C,)
    matrix: np.ndarray | None = None  # gcn_zca: (D, D) whitening matrix
    gcn: dict[str, float] = field(default_factory=dict)  # gcn_zca: GCN_DEFAULTS keys
    eps: float = ZCA_DEFAULT_EPS  # gcn_zca: ZCA regulariser

    @property
    def pixel_scale(self) -> float:
        """Factor from 0..255 pixel values to the input of the kind's formula."""
        return 1.0 if self.kind == "gcn_zca" else 1.0 / 255

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Preprocess (N, C, H, W) images, uint8 or float on the 0..255 scale, to float32."""
        import numpy as np

        if images.ndim != 4 or images.shape[1] != self.shape[0]:
            raise UserError(
                f"preprocessing was fitted on {self.shape[0]}-channel images (N, C, H, W), got shape {images.shape}"
            )
        if self.kind == "gcn_zca":
            assert self.mean is not None and self.matrix is not None  # set by fit / from_dict
            if images.shape[1:] != self.shape:
                raise UserError(f"gcn_zca preprocessing was fitted on {self.shape} images, got {images.shape[1:]}")
            out = np.empty(images.shape, dtype=np.float32)
            flat_out = out.reshape(len(images), -1)
            for start in range(0, len(images), CHUNK):
                chunk = images[start : start + CHUNK].reshape(-1, flat_out.shape[1])
                normalized = global_contrast_normalize(chunk.astype(np.float64), **self.gcn)
                centred = normalized.astype(np.float32) - self.mean  # float32 matmul: 2x faster
                flat_out[start : start + CHUNK] = centred @ self.matrix
            return out
        scaled = images.astype(np.float32) * np.float32(self.pixel_scale)
        if self.kind == "none":
            return scaled
        assert self.mean is not None and self.std is not None  # set by fit / from_dict
        return (scaled - self.mean[:, None, None]) / self.std[:, None, None]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; the format is in the module docstring."""
        out: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "shape": list(self.shape),
            "pixel_scale": self.pixel_scale,
        }
        if self.kind == "normalize":
            assert self.mean is not None and self.std is not None
            out["mean"] = self.mean.tolist()
            out["std"] = self.std.tolist()
        elif self.kind == "gcn_zca":
            assert self.mean is not None and self.matrix is not None
            out["gcn"] = dict(self.gcn)
            out["zca"] = {"eps": self.eps, "mean": self.mean.tolist(), "matrix": self.matrix.tolist()}
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Preprocessing:
        """Rebuild from `to_dict()` output, e.g. read back from a checkpoint."""
        import numpy as np

        where = "preprocessing dict"
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a dict, got {type(data).__name__}")
        if data.get("format") != FORMAT_VERSION:
            raise UserError(f"{where}: format {data.get('format')!r}: expected {FORMAT_VERSION}")
        kind = _require(data, "kind", where)
        check_kind(kind)
        shape = tuple(int(d) for d in _require(data, "shape", where))
        if len(shape) != 3:
            raise UserError(f"{where}: shape {list(shape)}: expected [C, H, W]")
        shape3 = (shape[0], shape[1], shape[2])
        if kind == "none":
            return cls("none", shape3)
        if kind == "normalize":
            mean = np.asarray(_require(data, "mean", where), dtype=np.float32)
            std = np.asarray(_require(data, "std", where), dtype=np.float32)
            if mean.shape != (shape[0],) or std.shape != (shape[0],):
                raise UserError(f"{where}: mean and std must list {shape[0]} channel values")
            return cls("normalize", shape3, mean=mean, std=std)
        gcn_data = _require(data, "gcn", where)
        zca = _require(data, "zca", where)
        gcn = {k: float(_require(gcn_data, k, f"{where} gcn")) for k in GCN_DEFAULTS}
        dim = math.prod(shape)
        mean = np.asarray(_require(zca, "mean", f"{where} zca"), dtype=np.float32)
        matrix = np.asarray(_require(zca, "matrix", f"{where} zca"), dtype=np.float32)
        if mean.shape != (dim,) or matrix.shape != (dim, dim):
            raise UserError(f"{where}: zca mean and matrix must be ({dim},) and ({dim}, {dim})")
        eps = float(_require(zca, "eps", f"{where} zca"))
        return cls("gcn_zca", shape3, mean=mean, matrix=matrix, gcn=gcn, eps=eps)


def global_contrast_normalize(x: np.ndarray, *, scale: float, sqrt_bias: float, min_divisor: float) -> np.ndarray:
    """pylearn2's GCN (subtract_mean=True, use_std=False) on rows of `x` (N, D): each row
    minus its mean, divided by sqrt(sqrt_bias + sum of squares) / scale."""
    import numpy as np

    centred = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt(sqrt_bias + np.square(centred).sum(axis=1)) / scale
    norms[norms < min_divisor] = 1.0  # constant images stay zero instead of dividing by 0
    return centred / norms[:, None]


def check_kind(kind: object) -> None:
    """Refuse an unknown kind, suggesting the nearest."""
    if kind not in KINDS:
        raise UserError(
            f"unknown preprocessing '{kind}': expected one of {', '.join(KINDS)}" + did_you_mean(str(kind), KINDS)
        )


def _require(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise UserError(f"{where}: missing key '{key}'")
    return data[key]
