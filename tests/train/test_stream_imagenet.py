"""The ImageNet ALL-CNN of Table 6 (`specs/allcnn_imagenet.yaml`) trains from an
ImageNet-style folder with its own recipe: two steps on a generated folder of 1000 classes
(one small JPEG each), streamed, at the spec's 3x227x227 input."""

from __future__ import annotations

import math
import time

import numpy as np
from PIL import Image

from tests.conftest import SPECS
from tests.train.train_helpers import load, run_cli


def test_the_imagenet_spec_takes_two_steps_on_an_imagenet_style_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, classes in (("train", 1000), ("val", 2)):  # val/: the test split, as ImageNet's
        for c in range(classes):
            folder = tmp_path / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / "0.JPEG")
    out = tmp_path / "run"
    started = time.perf_counter()
    code = run_cli(
        "train", str(SPECS / "allcnn_imagenet.yaml"), "--data-dir", str(tmp_path / "imagenet"), "--out", str(out),
        "--batch-size", "2", "--max-steps", "2", "--data-mode", "stream", "--workers", "0",
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert code == 0
    printed = capsys.readouterr().out
    assert "allcnn_imagenet (9,372,840 parameters) on folder, 3x227x227, 1000 classes" in printed
    assert "1000 train / 2 test images" in printed and "sgd lr 0.01 multistep x0.1 at [30, 60, 80]" in printed
    saved = load(out / "last.pt")
    assert (saved["epoch"], saved["step"], saved["global_step"], saved["data_mode"]) == (0, 2, 2, "stream")
    recipe = saved["config"]
    assert (recipe["momentum"], recipe["weight_decay"], recipe["epochs"]) == (0.9, 0.0005, 90)
    assert recipe["augment"] == {"flip": True, "translate": 16, "padding": "reflect"}
    assert saved["model"]["conv1.weight"].shape == (96, 3, 11, 11)
    # Two steps of 2 images were taken, and their loss was finite.
    assert math.isfinite(saved["partial"]["loss_sum"]) and saved["partial"]["seen"] == 4
    print(f"ImageNet ALL-CNN, 2 steps from a 1000-class folder: {seconds:.1f} s")
