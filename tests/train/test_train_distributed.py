"""Two real processes training with DistributedDataParallel over gloo on loopback: rank 0
alone prints and writes, the ranks end with identical weights, and the run resumes."""

from __future__ import annotations

import subprocess
import sys

from specc.training.distributed import free_port
from tests.train.train_helpers import TINY, load, specc_command, subprocess_env, write

TIMEOUT = 240


def test_two_process_gloo_run_and_resume(tmp_path):
    spec = write(tmp_path, TINY.replace("epochs: 3", "epochs: 1"))
    out = tmp_path / "run"
    # `specc train --nproc 2` is the shortcut for torchrun on this machine.
    first = subprocess.run(
        specc_command("train", spec, "--out", str(out), "--nproc", "2", "--no-progress"),
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("specc train: tiny") == 1 and first.stdout.count("epoch 1/1") == 1
    assert "1 thread x 2 processes" in first.stdout
    assert "2 processes ended with identical weights" in first.stdout
    assert sorted(p.name for p in out.iterdir() if p.name != "tensorboard") == [
        "best.pt", "config.yaml", "curves.png", "last.pt", "metrics.csv", "metrics.jsonl",
    ]  # fmt: skip (tensorboard/: where tensorboard is installed)
    saved = load(out / "last.pt")
    assert saved["world_size"] == 2 and len(saved["rng"]["torch"]) == 2
    assert not torch_equal(saved["rng"]["torch"][0], saved["rng"]["torch"][1])  # dropout differs per rank

    # Resume with torchrun itself, one more epoch.
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        *specc_command("train", "--resume", str(out), "--epochs", "2", "--no-progress")[1:],
    ]  # fmt: skip
    second = subprocess.run(
        command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("resuming") == 1 and "with epochs 1 -> 2" in second.stderr
    assert second.stdout.count("epoch 2/2") == 1 and "2 processes ended with identical weights" in second.stdout
    resumed = load(out / "last.pt")
    assert resumed["epoch"] == 2 and [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == saved["history"][0]
    assert resumed["history"][1]["train_loss"] < saved["history"][0]["train_loss"]


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
