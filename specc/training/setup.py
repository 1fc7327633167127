"""What a training run sets up before its first step: device, threads, precision,
optimizer, the per-rank dropout seed, and the Ctrl-C/SIGTERM handling."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

import numpy as np
import torch

from specc.errors import UserError
from specc.training.config import TrainConfig
from specc.training.distributed import World


def pick_device(choice: str, world: World) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device cuda: no CUDA device is available here — use --device cpu")
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def configure(cfg: TrainConfig, threads: int | None, world: World, device: torch.device) -> None:
    """Threads and backend switches. Not all of them leave results alone: on the CPU the
    thread count decides how kernels split their sums, which changes the last bits of every
    result, and training can amplify those bits (measured, 1 vs 2 threads: the 844-parameter
    test network's weights 5.5e-7 apart after 3 epochs; allcnn_c_fmnist after its first 60
    steps, in the unstable start of training, 0.69 apart and 25% vs 40% test accuracy). Each
    thread count is deterministic on its own: checkpoints record it and a resume with another
    count says so. On CUDA, TF32 and cuDNN's kernel search trade exactness for speed."""
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads {threads}: expected a positive number")
        torch.set_num_threads(threads)
    elif world.local_size > 1 and device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Share the cores among this machine's processes (a launcher that set OMP_NUM_THREADS
        # has shared them already).
        torch.set_num_threads(max(1, torch.get_num_threads() // world.local_size))
    if device.type == "cpu":
        keep_large_buffers()
    if cfg.precision == "fp16" and device.type != "cuda":
        raise UserError("precision fp16 needs a CUDA device — on the CPU use bf16")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def keep_large_buffers() -> bool:
    """Let glibc keep freed activation buffers for the next step instead of unmapping them.

    A training step allocates and frees the same large tensors (tens of MB each for
    ALL-CNN-C at batch 128) every time. Above glibc's mmap threshold (at most 32 MB by
    default) each one is a fresh mmap whose pages are faulted in and zeroed on first touch,
    then unmapped again; raising the mmap and trim thresholds keeps them in the heap, where
    the next step reuses them: about 10-20% more images/s measured on a 2-core CPU. The cost
    is that the process keeps its peak memory until it exits. Linux/glibc only; a no-op
    elsewhere. Returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and other C libraries
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))


def autocast_for(precision: str, device: torch.device):
    """A factory of autocast contexts (a fresh one per forward pass)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Weight decay on every parameter, biases included, as Caffe (and the paper) did.
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def rank_seed(seed: int, rank: int) -> int:
    """The dropout RNG seed of one process: fixed by the recipe's seed, different per rank."""
    return int(np.random.SeedSequence([seed, rank, 7]).generate_state(1, dtype=np.uint64)[0] >> 1)


class StopSignals:
    """Ctrl-C and SIGTERM ask the loop to checkpoint and stop after the current step; a
    second Ctrl-C stops at once (KeyboardInterrupt) without a checkpoint."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopSignals:
        self.requested = 0
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            self.__exit__()
            raise KeyboardInterrupt
        self.requested = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
