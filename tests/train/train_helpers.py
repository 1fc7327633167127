"""Shared by the `specc train` / `specc eval` tests: tiny specs on synthetic data and a way
to run the CLI in-process with one CPU thread (so results are bit-reproducible)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from specc.cli import main
from tests.conftest import ROOT

# 3x8x8 input, 4 classes, 844 parameters: an epoch of 512 images takes a fraction of a second.
TINY = """\
name: tiny
input: {channels: 3, size: 8}
classes: 4
defaults:
  conv: {kernel: 3, padding: same, activation: relu}
layers:
  - {type: conv, filters: 8}
  - {type: conv, filters: 8, stride: 2}
  - {type: dropout, rate: 0.2}
  - {type: conv, filters: 4, kernel: 1, activation: none}
  - {type: global_avg_pool}
  - {type: softmax}
train:
  dataset: synthetic
  dataset_options: {size: 512}
  epochs: 3
  batch_size: 32
  lr: 0.1
  schedule: cosine
  augment: {flip: true, translate: 1}
"""

# The same network with 16 filters: another architecture.
OTHER = TINY.replace("name: tiny", "name: other").replace("filters: 8}", "filters: 16}")


def write(tmp_path: Path, text: str = TINY, name: str = "tiny.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_cli(*args: str) -> int:
    """`specc ARGS` in this process with one torch thread (restored afterwards)."""
    threads = torch.get_num_threads()
    try:
        return main([*args, "--threads", "1", "--no-progress"] if args[0] == "train" else list(args))
    finally:
        torch.set_num_threads(threads)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def subprocess_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def specc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "specc", *args]


def popen(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        specc_command(*args), cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
