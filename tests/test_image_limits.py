"""Images and figures a user can make too large end in one line stating the limit: a PNG
whose header claims 60000x60000 pixels (a decompression bomb), a zero-sized image, a huge
`--tile`, a figure too large to draw."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from specc.cli import main

SPEC = str(Path(__file__).resolve().parents[1] / "specs" / "allcnn_c.yaml")


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that only claims its size: IHDR, a token IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("model")
    assert main(["compile", SPEC, "--target", "onnx", "-o", str(out)]) == 0
    return str(out / "allcnn_c.onnx")


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((60000, 60000), "the image claims more pixels than the limit of 64 megapixels (a decompression bomb?)"),
        ((10000, 10000), "an image of 10000x10000 pixels exceeds the limit of 64 megapixels (a decompression bomb?)"),
    ],
)
def test_predict_refuses_huge_images(model, tmp_path, capsys, size, expected):
    image = png_header(tmp_path / "huge.png", *size)
    capsys.readouterr()
    assert main(["predict", model, str(image)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {image}: {expected}"


def test_predict_refuses_a_zero_sized_image(model, tmp_path, capsys):
    image = png_header(tmp_path / "zero.png", 0, 10)
    capsys.readouterr()
    assert main(["predict", model, str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {image}: ") and "\n" not in err


def test_visualize_refuses_a_huge_tile(tmp_path, capsys):
    out = tmp_path / "v.png"
    assert main(["visualize", SPEC, "--layer", "conv6", "--no-image", "--tile", "100000", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "error: --tile 100000: exceeds the limit of 1,024"
    assert not out.exists()


def test_a_figure_too_large_to_draw_is_refused():
    import numpy as np

    from specc.errors import UserError
    from specc_viz.render import Tile, render_grid

    rows = [[Tile(np.zeros((8, 8, 3), np.uint8), "t")] * 200 for _ in range(200)]
    with pytest.raises(UserError, match=r"over the limit of 100 megapixels"):
        render_grid(rows, tile=64)
