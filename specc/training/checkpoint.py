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
                 > 0 when Ctrl-C/SIGTERM or --max-steps stopped the run mid-epoch). Messages
                 number both from 1: epoch 1 is the first, "after step 4/16" means the first
                 four batches of the epoch are done (`position`)
    global_step  optimisation steps taken since the run started, over all epochs and resumes
    partial      the interrupted epoch's running sums {"loss_sum", "correct", "seen", "seconds"}
                 (and "correct5", top-5 hits, with >= 10 classes)
    history      one metrics row per completed epoch (what metrics.jsonl holds)
    best         {"split", "accuracy", "epoch", "metric", "value"} of best.pt (the epoch best
                 by the monitored metric, the split's accuracy then), or None
    top          the epochs of the best k checkpoints (save_top_k), best first
    early_stopping  {"monitor", "best", "best_epoch", "wait", "patience"} or None; replayed
                 from `history` on resume, recorded for the reader
    ema, ema_updates  the EMA weights (a state_dict like `model`) and the number of updates
                 so far, or None and 0 without EMA; `specc eval --ema` evaluates them
    data         {"train": fingerprint, "test": ..., "val": ...}: a resume on other data is refused
    limits       {"batches": N or None}: --limit-batches, which a resume keeps
    data_mode    "memory" or "stream" (`specc.training.inputs`): a resume keeps it
    sampler      where the training data's sampler stands: {"seed", "epoch", "position"
                 (batches of the epoch done, = step), "batch_size" (per process),
                 "world_size"}; the epoch's order is a pure function of (seed, epoch), so
                 a resume hands the loader the plan from `position` on
    run          {"command", "overrides", "started"}: how the run was first started
    resumes      one {"epoch", "step", "command", "started", "changes"} per resume
    world_size, threads, device   processes, CPU threads per process and device type: on the
                 CPU the thread count changes the last bits of every sum, so a resume with
                 another count says so (it continues, not bit-identically)
    versions

Every field's type is checked on reading (`specc.checkpoint_fields`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from specc.checkpoint_fields import check_fields
from specc.checkpoint_io import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint
from specc.emit import spec_hash, to_yaml
from specc.errors import UserError
from specc.training import rundir
from specc.training.distributed import World, gather
from specc.training.features import early_stop, top_epochs
from specc.training.schedule import lr_at
from specc.version import __version__

if TYPE_CHECKING:
    from specc.training.loop import Trainer

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


def restore_rng(path: Path, state: dict, world: World) -> bool:
    """Put back this rank's RNG states; False (states untouched) when the run had another
    number of processes, where no exact continuation exists anyway."""
    torch_states = state.get("torch") or []
    if len(torch_states) != world.size:
        return False
    try:
        torch.set_rng_state(torch_states[world.rank])
        cuda = state.get("cuda") or []
        if len(cuda) > world.rank and cuda[world.rank] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[world.rank])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: field 'rng' does not hold valid RNG states ({_first_line(exc)})") from None
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
    check_fields(path, payload)
    if len(payload["history"]) != payload["epoch"]:
        raise UserError(
            f"{path}: field 'history' has {len(payload['history'])} rows for {payload['epoch']} epochs done"
            " — not a checkpoint as specc writes it: damaged or edited?"
        )
    return path, payload


def load_into(path: Path, what: str, load, state) -> None:
    """`load(state)` (a `load_state_dict`), with a failure named as the checkpoint field at fault."""
    try:
        load(state)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"{path}: field '{what}' does not fit this run ({_first_line(exc)})") from None


def check_optimizer_state(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """After `load_state_dict`: every per-parameter buffer has its parameter's shape (torch
    only finds out in the first step, deep inside the update)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                    raise UserError(
                        f"{path}: field 'optimizer' does not fit this run ({name} of shape {list(value.shape)}"
                        f" for a parameter of shape {list(param.shape)})"
                    )


def position(epoch: int, step: int, steps: int | None) -> str:
    """Where a run stands, numbered as the epoch lines number it (from 1): `after epoch 2`
    (an epoch's end) or `in epoch 3 after step 4/16` (the first 4 of its 16 batches done)."""
    if step == 0:
        return f"after epoch {epoch}" if epoch else "at the start"
    of = f"/{steps}" if steps else ""
    return f"in epoch {epoch + 1} after step {step}{of}"


def describe(path: Path, payload: dict) -> str:
    """`runs/x/last.pt (in epoch 2 after step 4/16)` for messages."""
    steps = (payload.get("scheduler") or {}).get("steps_per_epoch")
    return f"{path} ({position(payload['epoch'], payload['step'], steps)})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


# -- a Trainer's state in and out ----------------------------------------------------------
def batch_limit(asked: int | None, path: Path | None, resume: dict | None) -> int | None:
    """--limit-batches, which a run keeps from its start to its end (its schedule, its
    checkpoints and its resume all count those steps)."""
    if not resume:
        return asked
    saved = (resume.get("limits") or {}).get("batches")
    if asked is not None and asked != saved:
        had = f"--limit-batches {saved}" if saved else "no --limit-batches"
        raise UserError(f"--limit-batches {asked}: {path} was trained with {had}; a run keeps its batches per epoch")
    if saved is not None and not (isinstance(saved, int) and saved > 0):
        raise UserError(f"{path}: field 'limits' holds batches = {saved!r}: expected a positive whole number")
    return saved


def sampler_state(t: Trainer) -> dict:
    """The training sampler's position (see the module docstring)."""
    return {
        **t.loader.state_dict(),
        "epoch": t.epoch,
        "position": t.step,
        "batch_size": t.loader.batch_size,
        "world_size": t.world.size,
    }


def check_sampler(path: Path, payload: dict, t: Trainer) -> None:
    """Refuse a checkpoint whose sampler record disagrees with where the run stands."""
    sampler = payload.get("sampler")
    if sampler is None:  # written before the record existed: (epoch, step) say it all
        return
    if (sampler.get("epoch"), sampler.get("position")) != (payload["epoch"], payload["step"]):
        raise UserError(
            f"{path}: field 'sampler' stands at epoch {sampler.get('epoch')} position {sampler.get('position')}"
            f" but the run at epoch {payload['epoch']} step {payload['step']} — damaged or edited?"
        )


def restore(t: Trainer, path: Path, payload: dict) -> None:
    """Put a run's checkpoint back into trainer `t`: weights, optimizer, where it stands, RNG."""
    from specc.training import messages  # which reads this module's names

    load_into(path, "model", t.model.load_state_dict, payload["model"])
    load_into(path, "optimizer", t.optimizer.load_state_dict, payload["optimizer"])
    check_optimizer_state(path, t.optimizer)
    if t.scaler is not None and payload.get("scaler"):
        load_into(path, "scaler", t.scaler.load_state_dict, payload["scaler"])
    if t.ema is not None:
        if payload.get("ema") is None:  # EMA switched on at resume: it starts from the weights now
            t.ema.load(path, model_state(t.model), 0)
        else:
            t.ema.load(path, payload["ema"], payload.get("ema_updates"))
    t.epoch, t.step = payload["epoch"], payload["step"]
    if t.step >= t.steps:
        raise UserError(f"{path}: field 'step' is {t.step}, but an epoch of this run has {t.steps} steps")
    if t.step and payload.get("partial") is None:
        raise UserError(f"{path}: field 'partial' is missing, but the run stopped in the middle of an epoch")
    check_sampler(path, payload, t)
    t.global_step = payload.get("global_step", t.epoch * t.steps + t.step)
    # Only rank 0 carries the interrupted epoch's sums: they are summed over ranks later.
    t.partial = payload.get("partial") if t.world.main else None
    t.history, t.best = list(payload["history"]), payload.get("best")
    entry = {
        "epoch": t.epoch,
        "step": t.step,
        "command": " ".join(t.options.command),
        "started": rundir.now(),
        "changes": t.options.changes or None,
    }
    t.resumes = list(payload.get("resumes", [])) + [entry]
    notes = []
    if not restore_rng(path, payload["rng"], t.world):
        notes.append(messages.processes_note(len(payload["rng"]["torch"]), t.world.size))
    if t.device.type == "cpu" and payload.get("device", "cpu") == "cpu":
        note = messages.threads_note(payload.get("threads"), torch.get_num_threads())
        if note:
            notes.append(note)
    if t.world.main:
        print(messages.resume_line(path, payload, t.options.changes, notes), file=sys.stderr, flush=True)


def payload(t: Trainer) -> dict:
    """The checkpoint of trainer `t` as it stands (a collective: gathers every rank's RNG)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model_state(t.model),
        "spec": to_yaml(t.graph),
        "spec_hash": spec_hash(t.graph),
        "preprocessing": t.data.preprocessing.to_dict(),
        "labels": t.labels,
        "config": t.cfg.to_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": {
            "schedule": t.cfg.schedule,
            "epoch": t.epoch,
            "step": t.step,
            "steps_per_epoch": t.steps,
            "lr": lr_at(t.cfg, t.epoch, t.step, t.steps),
        },
        "scaler": t.scaler.state_dict() if t.scaler is not None else None,
        "rng": rng_state(t.world),
        "epoch": t.epoch,
        "step": t.step,
        "global_step": t.global_step,
        "partial": t.partial,
        "history": t.history,
        "best": t.best,
        "top": top_epochs(t.history, t.cfg.monitored, t.cfg.save_top_k),
        "early_stopping": _early_stopping(t),
        "ema": model_state(t.ema.model) if t.ema is not None else None,
        "ema_updates": t.ema.updates if t.ema is not None else 0,
        "data": t.fingerprints,
        "data_mode": t.data.mode,
        "sampler": sampler_state(t),
        "limits": {"batches": t.limit},
        "run": t.origin,
        "resumes": t.resumes,
        "world_size": t.world.size,
        "threads": torch.get_num_threads(),
        "device": t.device.type,
        "versions": versions(),
    }


def _early_stopping(t: Trainer) -> dict | None:
    cfg = t.cfg
    if cfg.early_stopping is None:
        return None
    return early_stop(t.history, cfg.early_stopping, cfg.patience, cfg.min_delta).record()
