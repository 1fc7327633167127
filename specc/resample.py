"""Which input rows an upsampled or padded row reads, and with which weights.

PyTorch's formulas (`F.interpolate`, `F.pad`), computed in float32 as its CPU kernels compute
them, so that the constants the ONNX emitter writes (Gather indices) and the matrices of the
backward pass (`specc.backward_structure`) agree with the torch forward exactly for nearest
and to float rounding for bilinear. One axis at a time: an image resizes rows, then columns.

A "row map" gives, per output index, the `(input index, weight)` pairs it sums; `matrix`
turns one into the (out, size) matrix A with out = A @ x along that axis.

Pure Python (the core imports no numpy).
"""

from __future__ import annotations

import math
import struct

RowMap = list[list[tuple[int, float]]]


def f32(value: float) -> float:
    """`value` rounded to the nearest float32 (ties to even), as a Python float."""
    return struct.unpack("f", struct.pack("f", value))[0]


def nearest_sources(size: int, out: int) -> list[int]:
    """The input index of each output index of `F.interpolate(mode="nearest")`, size -> out:
    floor(i * float32(size / out)) in float32 (PyTorch's `nearest_idx`), with its two exact
    cases (out = size, out = 2 * size)."""
    if out == size:
        return list(range(out))
    if out == 2 * size:
        return [i >> 1 for i in range(out)]
    scale = f32(size / out)
    # i * scale is exact in double (24-bit factors), then rounded once: float32's product.
    return [min(math.floor(f32(i * scale)), size - 1) for i in range(out)]


def nearest_rows(size: int, out: int) -> RowMap:
    return [[(i, 1.0)] for i in nearest_sources(size, out)]


def linear_rows(size: int, out: int, align_corners: bool) -> RowMap:
    """The two neighbours and weights of each output index of `F.interpolate(mode="bilinear")`
    along one axis (PyTorch's `area_pixel_compute_source_index` and `guard_index_and_lambda`):
    half-pixel centres clamped at 0, or corners aligned."""
    if out == size:
        return [[(i, 1.0)] for i in range(out)]
    if align_corners:
        ratio = f32((size - 1) / (out - 1)) if out > 1 else 0.0
    else:
        ratio = f32(size / out)
    rows: RowMap = []
    for i in range(out):
        if align_corners:
            src = f32(ratio * i)
        else:  # one rounding: the kernel's multiply-add is fused (exact in double, then rounded)
            src = max(f32(ratio * f32(i + 0.5) - 0.5), 0.0)
        low = min(math.floor(src), size - 1)
        high_weight = min(max(f32(src - low), 0.0), 1.0)
        high = low + 1 if low < size - 1 else low
        rows.append([(low, f32(1.0 - high_weight)), (high, high_weight)])
    return rows


def pad_rows(size: int, before: int, after: int, mode: str) -> RowMap:
    """The input index each output index of `F.pad` copies (none for a constant border):
    `reflect` mirrors about the edge without repeating it, `replicate` repeats the edge."""
    rows: RowMap = []
    for r in range(-before, size + after):
        if 0 <= r < size:
            rows.append([(r, 1.0)])
        elif mode == "reflect":
            rows.append([(-r if r < 0 else 2 * (size - 1) - r, 1.0)])
        elif mode == "replicate":
            rows.append([(min(max(r, 0), size - 1), 1.0)])
        else:
            rows.append([])
    return rows


def matrix(rows: RowMap, size: int) -> list[list[float]]:
    """The (len(rows), size) matrix A of a row map: out = A @ x along the axis."""
    out = [[0.0] * size for _ in rows]
    for r, pairs in enumerate(rows):
        for index, weight in pairs:
            out[r][index] += weight
    return out


def transposed(a: list[list[float]]) -> list[list[float]]:
    return [list(column) for column in zip(*a)]
