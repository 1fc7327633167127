"""`specc visualize`: PNG grids and arrays for images, dataset top-k and no image; the
receptive-field box on a hand-checked case."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import specc
from specc.cli import main
from specc_torch.weights import checkpoint_payload, save_checkpoint
from specc_viz import explain
from specc_viz.receptive import Box, crop, receptive_box
from specc_viz.render import LABEL_HEIGHT, PAD

NET = """
name: net
input: {channels: 3, size: 16}
classes: 4
layers:
  - {name: c1, type: conv, filters: 6, kernel: 3, padding: same, activation: relu}
  - {name: pool, type: max_pool, kernel: 3, stride: 2, padding: 1}
  - {name: c2, type: conv, filters: 8, kernel: 3, stride: 2, padding: same, activation: relu}
  - {name: c3, type: conv, filters: 4, kernel: 1}
  - {name: gap, type: global_avg_pool}
  - {type: softmax}
"""
TILE = 40


def grid_size(columns: int, rows: int) -> tuple[int, int]:
    """The PNG's (width, height) for a grid with a title row."""
    return PAD + columns * (TILE + PAD), LABEL_HEIGHT + PAD + PAD + rows * (TILE + LABEL_HEIGHT + PAD)


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_images_units_and_all_methods(tmp_path, write_spec, image_file, capsys):
    spec = write_spec(NET)
    out = tmp_path / "maps.png"
    args = ["visualize", spec, "--layer", "c2", "--unit", "3", "--unit", "1,2,2", "--method", "all"]
    assert (
        main([*args, "--image", str(image_file), str(image_file), "-o", str(out), "--tile", str(TILE), "--save-arrays"])
        == 0
    )
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == grid_size(columns=4, rows=4)  # image + 3 methods; 2 images x 2 units
    guided = np.load(tmp_path / "maps.guided.npy")
    assert guided.shape == (2, 2, 3, 16, 16) and guided.dtype == np.float32
    manifest = json.loads((tmp_path / "maps.json").read_text())
    assert manifest["units"] == [["c3", "c1@2,2"]] * 2 and manifest["arrays"]["deconvnet"] == "maps.deconvnet.npy"
    # The arrays are explain()'s maps of the image as the CLI prepared it (pixels / 255).
    model = specc.build(spec, seed=0)
    with Image.open(image_file) as im:
        pixels = np.asarray(im.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32).transpose(2, 0, 1)
    x = torch.from_numpy(pixels[None] / 255.0)
    np.testing.assert_allclose(guided[0], explain(model, x, layer="c2", units=[3, "1,2,2"])[0].numpy(), atol=1e-6)
    assert "maps.png" in capsys.readouterr().out


def test_class_and_top_units_with_a_checkpoint(tmp_path, write_spec, image_file):
    spec = write_spec(NET)
    ckpt = tmp_path / "run.pt"
    model = specc.build(spec, seed=5)
    pre = {
        "format": 1,
        "kind": "normalize",
        "shape": [3, 16, 16],
        "pixel_scale": 1 / 255,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    save_checkpoint(ckpt, checkpoint_payload(model, preprocessing=pre))
    out = tmp_path / "cls.png"
    assert (
        main(
            [
                "visualize",
                spec,
                "--weights",
                str(ckpt),
                "--class",
                "2",
                "--image",
                str(image_file),
                "-o",
                str(out),
                "--save-arrays",
            ]
        )
        == 0
    )
    maps = np.load(tmp_path / "cls.guided.npy")
    with Image.open(image_file) as im:
        pixels = np.asarray(im.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32).transpose(2, 0, 1)
    x = torch.from_numpy(((pixels / 255.0 - 0.5) / 0.25)[None].astype(np.float32))  # the run's preprocessing
    np.testing.assert_allclose(maps[0, 0], explain(model, x, units=2)[0].numpy(), atol=1e-5)
    top = tmp_path / "top.png"
    assert (
        main(
            [
                "visualize",
                spec,
                "--layer",
                "c1",
                "--top-units",
                "3",
                "--image",
                str(image_file),
                "-o",
                str(top),
                "--tile",
                str(TILE),
            ]
        )
        == 0
    )
    with Image.open(top) as png:
        assert png.size == grid_size(columns=2, rows=3)


def test_no_image_deconvnet(tmp_path, write_spec):
    spec = write_spec(NET)
    out = tmp_path / "blank.png"
    assert main(["visualize", spec, "--layer", "c1", "--no-image", "--method", "deconvnet", "--unit", "0", "--unit", "4",
                 "-o", str(out), "--tile", str(TILE), "--save-arrays"]) == 0  # fmt: skip
    maps = np.load(tmp_path / "blank.deconvnet.npy")
    assert maps.shape == (2, 3, 16, 16)
    # From a zero input a c1 unit at the centre (8, 8) reconstructs its own 3x3 filter there.
    weights = specc.build(spec, seed=0).c1.weight.detach().numpy()
    np.testing.assert_allclose(maps[1][:, 7:10, 7:10], weights[4], atol=1e-6)
    assert np.count_nonzero(maps[1]) == np.count_nonzero(weights[4])
    with Image.open(out) as png:
        assert png.size == grid_size(columns=2, rows=1)


def test_dataset_top_k(tmp_path, write_spec):
    spec = write_spec(NET)
    out = tmp_path / "top.png"
    args = ["visualize", spec, "--layer", "c2", "--data", "synthetic", "--top-k", "3", "--top-units", "2"]
    assert (
        main([*args, "--limit", "40", "--batch-size", "16", "-o", str(out), "--tile", str(TILE), "--save-arrays"]) == 0
    )
    manifest = json.loads((tmp_path / "top.json").read_text())
    maps = np.load(tmp_path / "top.guided.npy")
    assert maps.shape == (2, 3, 3, 16, 16)
    from specc.training.data import synthetic

    images = synthetic("test", (16, 16), channels=3, classes=4).images[:40]
    model = specc.build(spec, seed=0).eval()
    with torch.no_grad():
        acts = model(torch.from_numpy(images.astype(np.float32) / 255), stop_at="c2")[0]
    channels = [int(label[1:]) for label in manifest["units"]]
    assert channels == torch.topk(acts.amax(dim=(0, 2, 3)), 2).indices.tolist()  # the strongest units
    for u, channel in enumerate(channels):
        best = acts[:, channel].amax(dim=(1, 2))
        assert manifest["images"][u] == torch.topk(best, 3).indices.tolist()  # the K most active images
        y, x = manifest["positions"][u][0]
        assert acts[manifest["images"][u][0], channel, y, x] == best.max()  # at its strongest position
        assert manifest["boxes"][u][0] == [4 * y - 4, 4 * y + 5, 4 * x - 4, 4 * x + 5]
    with Image.open(out) as png:
        assert png.size == grid_size(columns=6, rows=2)  # per image: its crop and the map's crop


def test_user_errors(tmp_path, write_spec, image_file, capsys):
    spec = write_spec(NET)
    out = str(tmp_path / "x.png")
    assert main(["visualize", spec, "--layer", "c22", "--image", str(image_file), "-o", out]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert main(["visualize", spec, "--layer", "c2", "--unit", "8", "--image", str(image_file), "-o", out]) == 2
    assert "has 8 channels" in capsys.readouterr().err
    assert main(["visualize", spec, "--unit", "1", "--image", str(image_file), "-o", out]) == 2
    assert main(["visualize", spec, "--layer", "c2", "--data", "synthetic", "--unit", "1,0,0", "-o", out]) == 2
    assert main(["visualize", spec, "--layer", "c2", "--no-image", "--top-k", "3", "-o", out]) == 2
    assert main(["visualize", spec, "--layer", "c2", "--no-image", "-o", str(tmp_path / "x.jpg")]) == 2
    assert not list(tmp_path.glob("x.*"))


def test_receptive_box_on_a_hand_checked_case():
    graph = specc.load(NET)
    # c1 3x3 same: rf 3, jump 1, offset 1. pool 3x3/2 pad 1: rf 5, jump 2, offset 2.
    # c2 3x3/2 same: rf 5 + 2*2 = 9, jump 4, offset 2 + 1*2 = 4. So c2 (y, x) sees rows
    # 4y - 4 .. 4y + 4 and columns likewise.
    assert receptive_box(graph, "c1", 0, 0) == Box(-1, 2, -1, 2)
    assert receptive_box(graph, "pool", 1, 2) == Box(0, 5, 2, 7)
    assert receptive_box(graph, "c2", 1, 2) == Box(0, 9, 4, 13)
    assert receptive_box(graph, "c3", 3, 0) == Box(8, 17, -4, 5)  # a 1x1 conv adds nothing
    # The box holds every pixel a position unit's saliency can reach.
    model = specc.build(NET, seed=1)
    grad = explain(model, torch.rand(1, 3, 16, 16) + 0.1, layer="c2", units="0,1,2", method="deconvnet", seed="one")
    rows, cols = np.nonzero(grad[0].abs().sum(0).numpy())
    assert rows.min() >= 0 and rows.max() < 9 and cols.min() >= 4 and cols.max() < 13
    image = np.arange(2 * 4 * 4).reshape(2, 4, 4)
    assert crop(image, Box(-1, 1, 2, 5))[0].tolist() == [[0, 0, 0], [2, 3, 0]]
