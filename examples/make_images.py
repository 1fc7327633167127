"""Writes the sample images of examples/ (run from the repository root; they are committed,
so nobody needs to run this): four Fashion-MNIST test images, read from Debian's
dataset-fashion-mnist package, and one generated 32x32 RGB picture.

    apt-get install -y dataset-fashion-mnist && python examples/make_images.py
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parent
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
PICKED = (0, 1, 2, 9)  # test-set indices: an ankle boot, a pullover, a trouser, a sneaker


def fashion_mnist() -> None:
    with gzip.open(SOURCE / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(SOURCE / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    for index in PICKED:
        name = f"fmnist-{index:05d}-{CLASSES[labels[index]]}.png"
        Image.fromarray(images[index], mode="L").save(OUT / name, optimize=True)


def rgb_picture() -> None:
    """A red ball on green grass under a blue sky: a deterministic 32x32 RGB image."""
    y, x = np.mgrid[0:32, 0:32]
    sky = np.stack([60 + 3 * y, 120 + 3 * y, np.full_like(y, 230)], axis=-1)
    grass = np.stack([np.full_like(y, 40), 140 + 2 * (y - 20), np.full_like(y, 50)], axis=-1)
    image = np.where((y < 20)[..., None], sky, grass)
    ball = (x - 16) ** 2 + (y - 17) ** 2 <= 36
    image[ball] = (210, 30, 40)
    Image.fromarray(image.clip(0, 255).astype(np.uint8), mode="RGB").save(OUT / "ball-32x32.png", optimize=True)


if __name__ == "__main__":
    fashion_mnist()
    rgb_picture()
