"""The three kinds of figure `specc visualize` draws, as tiles and raw arrays.

- `image_figure`: maps of units for given images (Figures 4-6 when several methods): one row
  per (image, unit): the image, then one map per method.
- `dataset_figure`: the K dataset images that most activate each unit (Figure 3): one row
  per unit, for each image its crop under the unit's receptive field beside the crops of
  the reconstructions.
- `blank_figure`: no image (Figure 2): each unit starts alone, with value 1, from a zero
  input; a channel starts at its centre position; tiles show the receptive-field box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from specc.heatmap import map_to_rgb
from specc_viz.explain import explain_rows_by_method, inference_state
from specc_viz.receptive import crop, receptive_box
from specc_viz.render import Tile, image_to_rgb
from specc_viz.search import reconstruct_top, top_activations
from specc_viz.units import Channel, Position, Unit, check_unit, top_channels

GRID_COLUMNS = 8  # tiles per row where a figure is a flat list of units


@dataclass
class Figure:
    rows: list[list[Tile | None]]
    arrays: dict[str, np.ndarray]  # method -> raw maps
    title: str
    manifest: dict = field(default_factory=dict)  # what each array axis holds


def _layer_label(model, layer: str) -> str:
    return "logits" if layer == model.output_name and layer != model.graph.output.name else layer


def image_figure(
    model,
    pixels: np.ndarray,
    names: list[str],
    prepare: Callable[[np.ndarray], torch.Tensor],
    layer: str,
    methods: list[str],
    *,
    units: list[Unit] | None = None,
    top_units: int | None = None,
    top_by: str = "max",
) -> Figure:
    """Maps for images `pixels` (B, C, H, W) on 0..255: the same `units` for every image, or
    each image's `top_units` most active channels. One forward pass for all images and
    methods (and one more to rank the channels with `top_units`)."""
    inputs = prepare(pixels)
    shape = tuple(model.shapes[layer])
    if units is not None:
        for unit in units:
            check_unit(unit, shape, layer)
        per_image = [list(units) for _ in range(len(pixels))]
    elif top_units is None:
        raise ValueError("image_figure: give the units to show, or top_units to show each image's most active")
    else:
        with torch.no_grad(), inference_state(model):
            activation = model(inputs, stop_at=layer)[0]
        per_image = [[Channel(int(c)) for c in row] for row in top_channels(activation, top_units, by=top_by)]
    rows_index = [(b, u) for b, unit_list in enumerate(per_image) for u in unit_list]
    label = _layer_label(model, layer)
    maps = {m: t.numpy() for m, t in explain_rows_by_method(model, inputs, layer, rows_index, methods).items()}
    rows: list[list[Tile | None]] = []
    for r, (b, unit) in enumerate(rows_index):
        tiles: list[Tile | None] = [Tile(image_to_rgb(pixels[b]), names[b])]
        tiles += [Tile(map_to_rgb(maps[m][r]), f"{label} {unit.label()} {m}") for m in methods]
        rows.append(tiles)
    count = len(per_image[0]) if per_image else 0
    same_count = all(len(u) == count for u in per_image)
    arrays = {m: maps[m].reshape(len(pixels), count, *maps[m].shape[1:]) if same_count else maps[m] for m in methods}
    manifest = {
        "axes": "image, unit, C, H, W" if same_count else "row, C, H, W",
        "images": names,
        "units": [[u.label() for u in unit_list] for unit_list in per_image],
    }
    return Figure(rows, arrays, f"{model.graph.name}: {label}, {', '.join(methods)}", manifest)


def dataset_figure(
    model,
    images: np.ndarray,
    prepare: Callable[[np.ndarray], torch.Tensor],
    layer: str,
    methods: list[str],
    k: int,
    *,
    channels: list[int] | None = None,
    top_units: int = 8,
    batch_size: int = 128,
) -> Figure:
    """Figure 3: for each unit (the given `channels`, else the `top_units` channels whose best
    image activates them most), its `k` best images of `images` (N, C, H, W) uint8."""
    shape = tuple(model.shapes[layer])
    for c in channels or []:
        check_unit(Channel(c), shape, layer)
    top = top_activations(model, images, layer, k, prepare, batch_size=batch_size)
    chosen = list(channels) if channels else top.strongest_channels(top_units)
    found = reconstruct_top(model, images, top, chosen, methods, prepare)
    label = _layer_label(model, layer)
    rows: list[list[Tile | None]] = []
    for i, c in enumerate(chosen):
        row: list[Tile | None] = []
        for j, hit in enumerate(found[methods[0]][i]):
            row.append(Tile(image_to_rgb(hit.image_crop), f"#{j + 1} img {hit.image} {hit.score:.2g}"))
            row += [Tile(map_to_rgb(found[m][i][j].map_crop), f"{label} c{c} {m}") for m in methods]
        rows.append(row)
    arrays = {}
    for m in methods:
        maps = [[hit.map for hit in per_unit] for per_unit in found[m]]
        if all(len(r) == k for r in maps):
            arrays[m] = np.stack([np.stack(r) for r in maps])
    manifest = {
        "axes": "unit, rank, C, H, W",
        "units": [f"c{c}" for c in chosen],
        "images": [[hit.image for hit in per_unit] for per_unit in found[methods[0]]],
        "positions": [[hit.position for hit in per_unit] for per_unit in found[methods[0]]],
        "boxes": [[[hit.box.top, hit.box.bottom, hit.box.left, hit.box.right] for hit in u] for u in found[methods[0]]],
    }
    return Figure(rows, arrays, f"{model.graph.name}: {label}, top {k} images per unit", manifest)


def blank_figure(model, layer: str, methods: list[str], units: list[Unit]) -> Figure:
    """Figure 2: each unit alone (value 1) on a zero input; a channel starts at its centre."""
    shape = tuple(model.shapes[layer])
    starts = []
    for unit in units:
        check_unit(unit, shape, layer)
        if isinstance(unit, Channel) and len(shape) == 3:
            unit = Position(unit.channel, shape[1] // 2, shape[2] // 2)
        starts.append(unit)
    zeros = torch.zeros((1, *model.graph.input_shape))
    rows_index = [(0, u) for u in starts]
    found = explain_rows_by_method(model, zeros, layer, rows_index, methods, seed="one")
    maps = {m: t.numpy() for m, t in found.items()}
    label = _layer_label(model, layer)
    tiles = []
    for r, u in enumerate(starts):
        # A low layer's unit sees a small patch: show the box under its receptive field.
        box = receptive_box(model.graph, layer, u.y, u.x) if isinstance(u, Position) else None
        for m in methods:
            shown = crop(maps[m][r], box) if box else maps[m][r]
            tiles.append(Tile(map_to_rgb(shown), f"{label} {u.label()} {m}"))
    per_row = max(1, GRID_COLUMNS // len(methods)) * len(methods)
    rows: list[list[Tile | None]] = [tiles[i : i + per_row] for i in range(0, len(tiles), per_row)]
    manifest = {"axes": "unit, C, H, W", "units": [u.label() for u in starts], "input": "zeros"}
    return Figure(rows, maps, f"{model.graph.name}: {label} from a zero input", manifest)
