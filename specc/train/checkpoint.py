"""Run checkpoints: what `specc train` saves, and reading a run back for `--resume`.

A checkpoint is the shared specc format (`specc.checkpoint_io`, which reads and writes every
checkpoint file): a plain dict of tensors, lists, numbers and strings, loadable with
`torch.load(weights_only=True)`:

    format       "specc-checkpoint-v1"
    model        state_dict (contiguous CPU tensors, keys = layer names)
    spec         canonical YAML of the spec, its `train:` the fully resolved recipe
    spec_hash    sha256 of `spec`
    preprocessing  Preprocessing.to_dict() (fitted on the training split)
    labels       class names
    config       the resolved recipe (= the spec's train section), as a dict
    optimizer    optimizer.state_dict()
    scheduler    {"schedule", "epoch", "step", "steps_per_epoch", "lr"}: the schedule is a
                 pure function of (epoch, step), so where the run stands is all it needs
    rng          {"torch": [CPU generator state per rank], "cuda": [[states] per rank]}
    epoch, step  epochs completed, and batches done of the next one (0 at an epoch's end;
                 > 0 when Ctrl-C/SIGTERM stopped the run mid-epoch)
    partial      the interrupted epoch's running sums {"loss_sum", "correct", "seen", "seconds"}
    history      one metrics row per completed epoch (what metrics.jsonl holds)
    best         {"split", "accuracy", "epoch"} of best.pt, or None
    data         {"train": fingerprint, "test": ..., "val": ...}: a resume on other data is refused
    world_size, versions
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from specc.checkpoint_io import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint
from specc.errors import UserError
from specc.train.distributed import World, gather
from specc.version import __version__

LAST, BEST = "last.pt", "best.pt"
RESUME_KEYS = ("model", "optimizer", "spec", "config", "epoch", "step", "rng", "history", "preprocessing")


def versions() -> dict[str, str]:
    import numpy

    return {
        "specc": __version__,
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "python": sys.version.split()[0],
    }


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict as contiguous CPU tensors: readers (ONNX export, numpy) need no stride logic."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def rng_state(world: World) -> dict[str, list]:
    """Every rank's RNG states (dropout draws from the global generator), gathered on all ranks."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    states = gather({"torch": torch.get_rng_state(), "cuda": cuda}, world)
    return {"torch": [s["torch"] for s in states], "cuda": [s["cuda"] for s in states]}


def restore_rng(state: dict, world: World) -> bool:
    """Put back this rank's RNG states; False (states untouched) when the run had another
    number of processes, where no exact continuation exists anyway."""
    torch_states = state.get("torch") or []
    if len(torch_states) != world.size:
        return False
    torch.set_rng_state(torch_states[world.rank])
    cuda = state.get("cuda") or []
    if cuda and cuda[world.rank] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[world.rank])
    return True


def save(path: Path, payload: dict) -> None:
    """Atomic write (temp file + fsync + rename): the previous file survives any crash."""
    save_checkpoint(path, payload)


def checkpoint_path(target: str | Path) -> Path:
    """A run directory means its last.pt; a file is taken as is."""
    path = Path(target)
    if path.is_dir():
        path = path / LAST
        if not path.exists():
            raise UserError(f"{target}: no {LAST} in this directory — is it a `specc train` run directory?")
    return path


def read_for_resume(target: str | Path) -> tuple[Path, dict]:
    """(checkpoint path, payload) of a run to continue; one-line errors for anything wrong."""
    path = checkpoint_path(target)
    payload = read_checkpoint(path)  # weights_only=True; one line for a truncated/corrupt file
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a specc checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    missing = [k for k in RESUME_KEYS if k not in payload]
    if missing:
        raise UserError(f"{path}: cannot resume from it: no {', '.join(missing)} (saved by export, not by a run?)")
    return path, payload


def describe(path: Path, payload: dict) -> str:
    """`runs/x/last.pt (epoch 3, step 12)` for messages."""
    step = f", step {payload['step']}" if payload.get("step") else ""
    return f"{path} (epoch {payload['epoch']}{step})"
