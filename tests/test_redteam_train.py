"""`specc train` on odd data: the in-memory npy split is a writable copy (torch warned of
undefined behaviour on the read-only memory map), an empty class folder is named."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from specc.cli import main
from specc.training.data.arrays import load_npy


def _npy(folder, count=4):
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "train_images.npy", rng.integers(0, 255, (count, 3, 4, 4), dtype=np.uint8))
    np.save(folder / "train_labels.npy", np.arange(count) % 2)


def test_npy_in_memory_is_a_writable_copy(tmp_path):
    _npy(tmp_path / "d")
    data = load_npy(str(tmp_path / "d"), "train")
    assert data.images.flags.writeable and not isinstance(data.images, np.memmap)
    assert np.array_equal(data.images, np.load(tmp_path / "d" / "train_images.npy"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" UserWarning would fail here
        torch.from_numpy(data.images)


def test_folder_with_an_empty_class_folder(tmp_path, capsys):
    from PIL import Image

    for name in ("cat", "dog", "empty"):
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
    for name in ("cat", "dog"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "data" / "train" / name / "0.png")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ninput: {channels: 3, size: 4}\nclasses: 3\nlayers:\n"
        "  - {type: global_avg_pool}\n  - {type: flatten}\n  - {type: linear, units: 3}\n"
    )
    argv = ["train", str(spec), "--data", "folder", "--data-dir", str(tmp_path / "data"), "--epochs", "1"]
    assert main([*argv, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: {tmp_path / 'data' / 'train' / 'empty'}: no images: expected bmp/gif/jpeg/jpg/png/ppm/tif/tiff/webp files"
    )
    assert not (tmp_path / "run").exists()


def test_a_corrupt_image_read_by_a_stream_worker_is_one_line(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "test"):
        for name in ("cat", "dog"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "0.png")
    bad = tmp_path / "data" / "train" / "dog" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ninput: {channels: 3, size: 4}\nclasses: 2\nlayers:\n"
        "  - {type: global_avg_pool}\n  - {type: flatten}\n  - {type: linear, units: 2}\n"
    )
    argv = ["train", str(spec), "--data", "folder", "--data-dir", str(tmp_path / "data"), "--epochs", "1"]
    argv += ["--data-mode", "stream", "--workers", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    # torch re-raises a worker's error with the worker's traceback as its message
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {bad}: cannot decode image: ") and "Traceback" not in err


def test_patience_without_early_stopping_is_refused(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ninput: {channels: 3, size: 4}\nclasses: 2\nlayers:\n"
        "  - {type: global_avg_pool}\n  - {type: flatten}\n  - {type: linear, units: 2}\n"
    )
    argv = ["train", str(spec), "--data", "synthetic", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert main([*argv, "--patience", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: --patience 3: only with --early-stopping METRIC (or train.early_stopping in the spec)"
        " — early stopping is off"
    )
    assert not (tmp_path / "run").exists()
