"""The dataset images that most activate each unit (Figure 3 of the paper).

`top_activations` streams a dataset through the network up to one layer, batch by batch, and
keeps for every channel the K images with the largest activation anywhere in the channel
(the max over positions), with where that maximum is. Memory stays (channels x K) whatever
the dataset's size. `reconstruct_top` then reconstructs each (unit, image) pair from the
unit at its strongest position, and crops image and reconstruction under the unit's
receptive field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from specc_viz.explain import explain_rows_by_method, inference_state
from specc_viz.receptive import Box, crop, receptive_box
from specc_viz.units import Channel, Position


@dataclass(frozen=True)
class TopActivations:
    """For each channel c of `layer`: its K best images, best first."""

    layer: str
    scores: torch.Tensor  # (C, K) activation maxima
    images: torch.Tensor  # (C, K) dataset indices (-1 where fewer than K images were seen)
    ys: torch.Tensor  # (C, K) row of the maximum (0 for a flat layer)
    xs: torch.Tensor  # (C, K) column of the maximum

    def strongest_channels(self, n: int) -> list[int]:
        """The n channels whose best image activates them most."""
        n = min(n, len(self.scores))
        return torch.topk(self.scores[:, 0], n).indices.tolist()


def top_activations(
    model,
    images: np.ndarray,
    layer: str,
    k: int,
    prepare: Callable[[np.ndarray], torch.Tensor],
    *,
    batch_size: int = 128,
) -> TopActivations:
    """Stream `images` (N, C, H, W) raw pixels through `model` up to `layer`; `prepare` turns a
    batch of raw pixels into the model's input (the run's preprocessing)."""
    if k < 1:
        raise ValueError(f"k={k}: expected a positive integer")
    best = None
    with inference_state(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            a = model(prepare(images[start : start + batch_size]), stop_at=layer)[0]
            if a.dim() == 4:
                b, c, h, w = a.shape
                scores, where = a.flatten(2).max(dim=2)  # (B, C)
                ys, xs = where // w, where % w
            else:
                scores = a
                ys = xs = torch.zeros_like(a, dtype=torch.long)
            index = torch.arange(start, start + len(a))[:, None].expand_as(scores)
            batch = (scores.T, index.T, ys.T, xs.T)  # (C, B) each
            best = batch if best is None else tuple(torch.cat(p, dim=1) for p in zip(best, batch))
            order = torch.topk(best[0], min(k, best[0].shape[1]), dim=1).indices
            best = tuple(torch.gather(t, 1, order) for t in best)
    if best is None:
        raise ValueError("the dataset is empty")
    scores, index, ys, xs = best
    if scores.shape[1] < k:  # fewer images than K: pad so every channel has K slots
        pad = k - scores.shape[1]
        scores = torch.cat([scores, torch.full((len(scores), pad), float("-inf"))], dim=1)
        index, ys, xs = (torch.cat([t, torch.full((len(t), pad), -1)], dim=1) for t in (index, ys, xs))
    return TopActivations(layer, scores, index, ys, xs)


@dataclass(frozen=True)
class TopMap:
    """One reconstruction of Figure 3: unit `channel` from dataset image `image`."""

    channel: int
    rank: int
    image: int
    score: float
    position: tuple[int, int] | None
    box: Box
    map: np.ndarray  # (C, H, W) the full reconstruction
    map_crop: np.ndarray  # (C, h, w) under the receptive field
    image_crop: np.ndarray  # (C, h, w) raw pixels under the receptive field


def reconstruct_top(
    model,
    images: np.ndarray,
    top: TopActivations,
    channels: list[int],
    methods: list[str],
    prepare: Callable[[np.ndarray], torch.Tensor],
    *,
    max_rows: int = 128,
) -> dict[str, list[list[TopMap]]]:
    """method -> one list per channel of its top images' maps (best first), each from the
    unit at that image's strongest position. One forward pass over the images involved."""
    pairs = [(c, r) for c in channels for r in range(top.images.shape[1]) if top.images[c, r] >= 0]
    used = sorted({int(top.images[c, r]) for c, r in pairs})
    slot = {image: i for i, image in enumerate(used)}
    spatial = len(model.shapes[top.layer]) == 3
    units = [Position(c, int(top.ys[c, r]), int(top.xs[c, r])) if spatial else Channel(c) for c, r in pairs]
    rows = [(slot[int(top.images[c, r])], u) for (c, r), u in zip(pairs, units)]
    inputs = prepare(images[used])
    all_maps = explain_rows_by_method(model, inputs, top.layer, rows, methods, max_rows=max_rows)
    result: dict[str, list[list[TopMap]]] = {}
    for method in methods:
        maps = all_maps[method].numpy()
        per_channel: dict[int, list[TopMap]] = {c: [] for c in channels}
        for (c, r), unit, m in zip(pairs, units, maps):
            image = int(top.images[c, r])
            position = (unit.y, unit.x) if isinstance(unit, Position) else None  # Positions where spatial
            box = receptive_box(model.graph, top.layer, *(position or (0, 0)))
            if not spatial:  # a flat layer sees the whole image
                box = Box(0, m.shape[1], 0, m.shape[2])
            per_channel[c].append(
                TopMap(c, r, image, float(top.scores[c, r]), position, box, m, crop(m, box), crop(images[image], box))
            )
        result[method] = [per_channel[c] for c in channels]
    return result
