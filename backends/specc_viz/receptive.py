"""Where a unit looks: the box of input pixels under a unit's receptive field.

For each layer we track the input interval seen by output position 0 along each axis,
`[start, end)`, and the jump `J` (the input distance between neighbouring outputs); output
position p then sees `[start + p*J, end + p*J)`. A windowed layer (kernel k_eff, stride s,
padding pad) reading a value with (start_in, end_in, J_in) gives

    start = start_in - pad * J_in
    end   = end_in + (k_eff - 1 - pad) * J_in
    J     = J_in * s

so `end - start` is the receptive field of `specc.shapes` and `-start` the cumulative padding
offset. Branches merge by the union of their intervals (the widest view). The box may reach
outside the image (padding); `crop` fills that part so every crop has the field's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specc.ir import INPUT, Graph

Axis = tuple[int, int, int]  # (start, end, jump) of output position 0


@dataclass(frozen=True)
class Box:
    """Input rows [top, bottom) and columns [left, right); may extend past the image."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.bottom - self.top, self.right - self.left)


def geometry(graph: Graph) -> dict[str, tuple[Axis, Axis]]:
    """(rows, columns) interval and jump of output position 0 of every layer (and `input`)."""
    geo: dict[str, tuple[Axis, Axis]] = {INPUT: ((0, 1, 1), (0, 1, 1))}
    shapes: dict[str, tuple[int, ...]] = {INPUT: graph.input_shape}
    for node in graph.topo_order():
        ins = [shapes[s] for s in node.inputs]
        shapes[node.name] = node.op.output_shape(ins)
        kh, kw, sh, sw = node.op.window(ins)
        ph, pw = node.op.pads()
        axes = []
        for axis, (k, s, pad) in enumerate(((kh, sh, ph), (kw, sw, pw))):
            start = min(geo[src][axis][0] for src in node.inputs)
            end = max(geo[src][axis][1] for src in node.inputs)
            maps = [src for src in node.inputs if len(shapes[src]) == 3] or list(node.inputs)
            jump = max(geo[src][axis][2] for src in maps)  # a flat gate's jump is not a spacing
            axes.append((start - pad * jump, end + (k - 1 - pad) * jump, jump * s))
        geo[node.name] = (axes[0], axes[1])
    return geo


def receptive_box(graph: Graph, layer: str, y: int, x: int) -> Box:
    """The input box under position (y, x) of `layer`'s output."""
    (top, bottom, jy), (left, right, jx) = geometry(graph)[layer]
    return Box(top + y * jy, bottom + y * jy, left + x * jx, right + x * jx)


def crop(array: np.ndarray, box: Box, fill: float = 0) -> np.ndarray:
    """array (C, H, W) under `box`, (C, box height, box width); outside the image `fill`."""
    c, h, w = array.shape
    out = np.full((c, *box.size), fill, dtype=array.dtype)
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.bottom, h), min(box.right, w)
    if bottom > top and right > left:
        out[:, top - box.top : bottom - box.top, left - box.left : right - box.left] = array[:, top:bottom, left:right]
    return out
