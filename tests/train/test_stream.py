"""The streaming data path (`--data-mode stream`): images decoded per batch in DataLoader
workers give the same batches as the in-memory path, whatever the number of workers and
processes, so a streamed run ends with the in-memory run's weights, and a streamed run
stopped mid-epoch resumes to them bit for bit (CPU, one thread)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from specc.training import inputs
from specc.training.data import AugmentConfig, TensorLoader, synthetic
from specc.training.data.folder import load_folder
from specc.training.data.preprocess import fit_preprocessing
from specc.training.data.stream import open_stream
from specc.training.data.streamloader import StreamLoader, StreamSplit, fit_streamed
from tests.train.train_helpers import TINY, load, run_cli, same_weights, write

# TINY on a folder: 96 training images of 12x10 pixels (resized to 8x8 by the reader), batch
# 16: 6 steps an epoch.
FOLDER_SPEC = (
    TINY.replace("  dataset: synthetic\n  dataset_options: {size: 512}\n", "  dataset: folder\n")
    .replace("batch_size: 32", "batch_size: 16")
    .replace("epochs: 3", "epochs: 2")
)


def make_folder(root: Path, train: int = 96, test: int = 32) -> Path:
    """An ImageNet-style folder of PNGs (lossless, so the pixels are known) in 4 classes."""
    for split, count in (("train", train), ("val", test)):
        ds = synthetic("train" if split == "train" else "test", (12, 10), classes=4, size=count)
        for i, (image, label) in enumerate(zip(ds.images, ds.labels)):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("folder"))


def batches_of(loader, epochs: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        out += list(loader.batches())
    return out


def test_streamed_batches_equal_the_in_memory_ones_for_any_workers_and_ranks(folder):
    memory, stream = load_folder(str(folder), "train", (8, 8)), open_stream("folder", str(folder), "train", (8, 8))
    assert np.array_equal(stream.read(range(len(stream))), memory.images)
    augment = AugmentConfig(flip=True, translate=1, padding="reflect")
    common = {"shuffle": True, "drop_last": False, "preprocess": lambda x: x / 255, "augment": augment, "seed": 3}
    for rank in (0, 1):
        shard = {"rank": rank, "world_size": 2}
        expected = batches_of(
            TensorLoader(torch.from_numpy(memory.images), torch.from_numpy(memory.labels), 8, **common, **shard)
        )
        for workers in (0, 2):
            got = batches_of(StreamLoader(stream, 8, workers=workers, **common, **shard))
            assert len(got) == len(expected) == 2 * 6
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected))
    # A resume from batch 4 gets the epoch's batches 4.. exactly.
    loader = StreamLoader(stream, 8, workers=2, **common)
    loader.set_epoch(1)
    tail = list(loader.batches(4))
    loader.set_epoch(1)
    assert [torch.equal(a[0], b[0]) for a, b in zip(tail, list(loader.batches())[4:])] == [True] * 8


def test_evaluation_batches_and_normalize_fit_equal_the_in_memory_ones(folder):
    memory, stream = load_folder(str(folder), "val", (8, 8)), open_stream("folder", str(folder), "val", (8, 8))
    split = StreamSplit(stream, torch.device("cpu"), workers=2)
    got = list(split.batches(1, 2, 5))  # rank 1 of 2: images 1, 3, 5, ... in batches of 5
    assert [len(y) for _, y in got] == [5, 5, 5, 1]
    assert torch.equal(torch.cat([x for x, _ in got]), torch.from_numpy(memory.images[1::2]))
    assert torch.equal(torch.cat([y for _, y in got]), torch.from_numpy(memory.labels[1::2]))
    expected = fit_preprocessing("normalize", memory.images)
    fitted = fit_streamed("normalize", stream, workers=2, batch_size=7)
    assert np.array_equal(fitted.mean, expected.mean) and np.array_equal(fitted.std, expected.std)


def test_a_streamed_run_stopped_mid_epoch_resumes_to_the_in_memory_runs_weights(folder, tmp_path, capsys):
    spec = write(tmp_path, FOLDER_SPEC)
    memory, streamed = tmp_path / "memory", tmp_path / "streamed"
    assert run_cli("train", spec, "--data-dir", str(folder), "--out", str(memory), "--data-mode", "memory") == 0
    assert "data: memory (--data-mode memory)" in capsys.readouterr().out
    # 6 steps an epoch: 8 steps stop in epoch 2 after step 2.
    args = ("--data-dir", str(folder), "--data-mode", "stream", "--workers", "2")
    assert run_cli("train", spec, "--out", str(streamed), "--max-steps", "8", *args) == 0
    assert "data: stream (--data-mode stream), 2 decoding workers per process" in capsys.readouterr().out
    stopped = load(streamed / "last.pt")
    assert (stopped["epoch"], stopped["step"], stopped["data_mode"]) == (1, 2, "stream")
    assert stopped["sampler"] == {"seed": 0, "epoch": 1, "position": 2, "batch_size": 16, "world_size": 1}
    assert run_cli("train", "--resume", str(streamed), "--workers", "1") == 0  # another worker count: same batches
    a, b = load(memory / "last.pt"), load(streamed / "last.pt")
    assert same_weights(a["model"], b["model"])
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert [r["test_acc"] for r in a["history"]] == [r["test_acc"] for r in b["history"]]
    # `specc eval` streams a streamed run's split again: the run's own figures, no "other images" note.
    capsys.readouterr()
    assert run_cli("eval", "--weights", str(streamed / "last.pt"), "--json") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["images"], report["accuracy"]) == (32, b["history"][-1]["test_acc"]) and captured.err == ""
    # The run keeps its data mode.
    assert run_cli("train", "--resume", str(streamed), "--epochs", "3", "--data-mode", "memory") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --data-mode memory: {streamed}/last.pt was trained with --data-mode stream; a run keeps its mode"
    )
    # A sampler record that disagrees with where the run stands is refused, naming the field.
    b["sampler"]["position"] = 3
    torch.save(b, streamed / "last.pt")
    assert run_cli("train", "--resume", str(streamed), "--epochs", "3") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {streamed}/last.pt: field 'sampler' stands at epoch 2 position 3 but the run at epoch 2 step 0"
        " — damaged or edited?"
    )


def test_npy_arrays_stream_from_a_memory_map(tmp_path):
    ds = synthetic("train", (8, 8), classes=4, size=40)
    np.save(tmp_path / "train_images.npy", ds.images)
    np.save(tmp_path / "train_labels.npy", ds.labels.astype(np.int32))
    np.save(tmp_path / "test_images.npy", ds.images[:8])
    np.save(tmp_path / "test_labels.npy", ds.labels[:8])
    stream = open_stream("npy", str(tmp_path), "train", (8, 8))
    assert stream.read([3, 0, 39]).tolist() == ds.images[[3, 0, 39]].tolist()
    common = {"shuffle": True, "drop_last": False, "preprocess": lambda x: x, "augment": AugmentConfig(flip=True)}
    expected = batches_of(TensorLoader(torch.from_numpy(ds.images), torch.from_numpy(ds.labels), 16, **common))
    got = batches_of(StreamLoader(stream, 16, workers=2, **common))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected))


def test_auto_mode_streams_what_would_not_fit_and_says_so(folder, tmp_path, monkeypatch, capsys):
    # 96 + 32 images of 3x8x8 = 24,576 bytes decoded; a machine with 64 kB of RAM allows 16 kB.
    spec = write(tmp_path, FOLDER_SPEC.replace("epochs: 2", "epochs: 1"))
    monkeypatch.setattr(inputs, "physical_memory", lambda: 64_000)
    assert run_cli("train", spec, "--data-dir", str(folder), "--out", str(tmp_path / "a"), "--workers", "0") == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "data: stream (decoded 24.6 kB > 16.0 kB, a quarter of RAM), decoded in-process"
    )
    monkeypatch.setattr(inputs, "physical_memory", lambda: 8 << 30)
    assert run_cli("train", spec, "--data-dir", str(folder), "--out", str(tmp_path / "b")) == 0
    assert capsys.readouterr().out.splitlines()[0] == "data: memory (decoded 24.6 kB <= 2.1 GB, a quarter of RAM)"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ("--data", "synthetic"),
            "error: --data-mode stream: synthetic is read whole; streaming is for folder and npy datasets",
        ),
        (
            ("--set", "train.preprocessing=gcn_zca"),
            "error: preprocessing gcn_zca needs the whole training set in memory (its whitening matrix is D x D):"
            " use --data-mode memory on a dataset that fits, or preprocessing normalize",
        ),
        (
            ("--workers", "-1"),
            "error: specc train: argument --workers: '-1' is not a whole number >= 0 (see `specc train --help`)",
        ),
    ],
)
def test_what_cannot_stream_is_refused_in_one_line(folder, tmp_path, capsys, extra, message):
    spec = write(tmp_path, FOLDER_SPEC)
    args = ("train", spec, "--data-dir", str(folder), "--out", str(tmp_path / "r"), "--data-mode", "stream", *extra)
    try:
        code = run_cli(*args)
    except SystemExit as exc:  # argparse's refusal of a flag's value
        code = exc.code
    assert code == 2
    assert capsys.readouterr().err.strip() == message
