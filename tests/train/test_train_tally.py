"""The epoch tally stays on the device (the host looks every SYNC_EVERY steps, not every
step), finds the first non-finite loss, and works on CUDA (including a mid-epoch resume);
a worker that lost its peer says so in one line."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from specc.training import loop
from specc.training.distributed import World
from specc.training.tally import SYNC_EVERY, EpochTally
from tests.train.train_helpers import TINY, load, run_cli, subprocess_env, write


def test_tally_sums_like_the_per_step_host_version_and_finds_the_first_bad_step():
    torch.manual_seed(0)
    tally = EpochTally(torch.device("cpu"), {"loss_sum": 10.0, "correct": 3.0, "seen": 8.0, "seconds": 1.0})
    loss_sum, correct, seen = 10.0, 3.0, 8.0
    losses = [0.5, 1.25, math.inf, math.nan, 0.75]
    for step, value in enumerate(losses):
        logits, labels = torch.randn(4, 3), torch.randint(0, 3, (4,))
        tally.add(step, torch.tensor(value), logits, labels)
        loss_sum += value * 4
        correct += int((logits.argmax(1) == labels).sum())
        seen += 4
    snapshot = tally.sync(World(), stop_requested=True)
    assert (snapshot.correct, snapshot.seen, snapshot.stop) == (correct, seen, True)
    assert math.isnan(snapshot.loss_sum)  # the sums went bad with the loss
    assert (snapshot.first_bad, snapshot.bad_loss) == (2, math.inf)  # the first one, not the NaN after it
    clean = EpochTally(torch.device("cpu"))
    clean.add(0, torch.tensor(2.0), torch.eye(3)[[0, 1]], torch.tensor([0, 2]))
    snapshot = clean.sync(World())
    assert (snapshot.loss, snapshot.accuracy, snapshot.first_bad, snapshot.stop) == (2.0, 0.5, None, False)


def test_the_host_looks_every_sync_every_steps_and_at_each_epochs_end(tmp_path, monkeypatch):
    calls = []
    real_sync = EpochTally.sync

    def sync(self, world, stop_requested=False):
        calls.append(1)
        return real_sync(self, world, stop_requested)

    monkeypatch.setattr(EpochTally, "sync", sync)
    # 512 images / batch 8 = 64 steps an epoch: syncs before steps 0, 25 and 50, and at the end.
    spec = write(tmp_path, TINY.replace("batch_size: 32", "batch_size: 8").replace("epochs: 3", "epochs: 2"))
    assert run_cli("train", spec, "--out", str(tmp_path / "run")) == 0
    assert SYNC_EVERY == 25 and len(calls) == 2 * 4


def test_nan_is_named_at_its_step_even_between_syncs(tmp_path, capsys):
    spec, out = write(tmp_path, TINY.replace("epochs: 3", "epochs: 1")), tmp_path / "run"
    assert run_cli("train", spec, "--out", str(out), "--lr", "1e6", "--set", "train.schedule=constant") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: epoch 1, step ") and "/16: the loss is nan at learning rate 1e+06" in err
    assert "no checkpoint was written yet" in err and not (out / "last.pt").exists()


def test_a_worker_that_lost_its_peer_says_so_in_one_line():
    code = (
        "from specc.training.launch import run_worker\n"
        "def body():\n"
        "    raise RuntimeError('[/x/gloo/transport/tcp/pair.cc:553] Connection reset by peer [127.0.0.1]:1. More.')\n"
        "run_worker(body)\n"
    )
    env = subprocess_env() | {"RANK": "1", "WORLD_SIZE": "2"}
    env.pop("SPECC_LAUNCH_DIR", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (
        "error: rank 1: lost contact with another training process (Connection reset by peer [127.0.0.1]:1)"
        " — it stopped or died: see its own message\n"
    )


@pytest.mark.cuda
def test_cuda_mid_epoch_stop_and_resume(tmp_path, monkeypatch, capsys):
    """The interrupted epoch's sums come back onto the GPU (they once were a CPU tensor added
    to a CUDA one); the resumed run ends where an uninterrupted CUDA run does, up to the
    nondeterminism of cuDNN."""
    spec = write(tmp_path, TINY)
    assert run_cli("train", spec, "--out", str(tmp_path / "ref"), "--device", "cuda") == 0
    real_lr_at = loop.lr_at

    def lr_at(cfg, epoch, step, steps):
        if (epoch, step) == (1, 3):
            os.kill(os.getpid(), signal.SIGTERM)
        return real_lr_at(cfg, epoch, step, steps)

    monkeypatch.setattr(loop, "lr_at", lr_at)
    assert run_cli("train", spec, "--out", str(tmp_path / "cut"), "--device", "cuda") == 143
    monkeypatch.undo()
    stopped = load(tmp_path / "cut" / "last.pt")
    assert (stopped["epoch"], stopped["step"], stopped["device"]) == (1, 4, "cuda") and stopped["partial"][
        "seen"
    ] == 128
    assert run_cli("train", "--resume", str(tmp_path / "cut")) == 0
    ref, resumed = load(tmp_path / "ref" / "last.pt"), load(tmp_path / "cut" / "last.pt")
    assert resumed["epoch"] == 3 and len(resumed["history"]) == 3
    # Epoch 2's figures come from the restored sums plus the rest of the epoch.
    for key in ("train_loss", "train_acc"):
        assert resumed["history"][1][key] == pytest.approx(ref["history"][1][key], abs=0.05)
