"""What a run does around its steps, as Lightning and Keras users know it: an exponential
moving average of the weights, early stopping on a monitored metric, and the best k
checkpoints.

Early stopping and the top-k are pure functions of the run's history (one metrics row per
epoch, kept in every checkpoint), so a resumed run decides exactly as an uninterrupted one
would, and a resume with another patience or k simply re-reads the history. The EMA weights
are state: they travel in the checkpoint (`ema`, `ema_updates`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from specc.errors import UserError
from specc.train_schema import monitor_mode

TOP_FILE = "top-epoch{epoch}.pt"  # one of the k best epochs (save_top_k > 1)
TOP_PATTERN = re.compile(r"top-epoch([1-9][0-9]*)\.pt")


# -----------------------------------------------------------------------------------------
# exponential moving average of the weights
class Ema:
    """A copy of `model` whose floating-point parameters and buffers follow the trained ones:
    after the t-th optimisation step (t = 1, 2, ...)

        ema = d_t * ema + (1 - d_t) * weights,   d_t = min(decay, (1 + t) / (10 + t))

    the warm-up of tf.train.ExponentialMovingAverage, so that the average forgets the random
    initial weights quickly in short runs; integer buffers (BatchNorm's step count) are copied."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        live = _tensors(model)
        averaged = _tensors(self.model)
        self._pairs = [(a, b) for a, b in zip(averaged, live) if a.is_floating_point()]
        self._copied = [(a, b) for a, b in zip(averaged, live) if not a.is_floating_point()]

    def rate(self, update: int) -> float:
        """d_t of update number `update` (from 1)."""
        return min(self.decay, (1 + update) / (10 + update))

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average, after an optimisation step (no host sync)."""
        self.updates += 1
        weight = 1.0 - self.rate(self.updates)
        for averaged, live in self._pairs:
            averaged.lerp_(live, weight)  # ema + (1 - d) * (w - ema)
        for a, b in self._copied:
            a.copy_(b)

    def load(self, path: Path, state: object, updates: object) -> None:
        """Put back the average of a checkpoint (`ema`, `ema_updates`), naming a bad field."""
        from specc.training.checkpoint import load_into

        if not isinstance(updates, int) or isinstance(updates, bool) or updates < 0:
            raise UserError(f"{path}: field 'ema_updates' is not a whole number >= 0 (it is {updates!r})")
        if not isinstance(state, dict):
            raise UserError(f"{path}: field 'ema' is not a state_dict (the run was saved with EMA on)")
        load_into(path, "ema", self.model.load_state_dict, state)
        self.updates = updates


def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters then buffers, in the module's order (the same for a deep copy)."""
    return [p.data for p in model.parameters()] + list(model.buffers())


# -----------------------------------------------------------------------------------------
# monitored metrics: early stopping and the best k
def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Lightning's rule: better than the best so far by more than `min_delta`."""
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass(frozen=True)
class EarlyStop:
    """Where early stopping stands after the epochs of a history."""

    monitor: str
    best: float | None
    best_epoch: int | None
    wait: int  # epochs since the last improvement
    patience: int

    @property
    def stop(self) -> bool:
        return self.wait >= self.patience

    def record(self) -> dict:
        return {
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "patience": self.patience,
        }

    def line(self, epoch: int, epochs: int) -> str:
        """`stopped early after epoch 5 of 20: val_loss did not improve for 3 epochs (...)`."""
        shown = f"{self.best:.4g}" if self.best is not None else "none"
        return (
            f"stopped early after epoch {epoch} of {epochs}: {self.monitor} did not improve for {self.wait}"
            f" epoch{'s' if self.wait != 1 else ''} (patience {self.patience}; best {shown} at epoch {self.best_epoch})"
        )


def early_stop(history: list[dict], monitor: str, patience: int, min_delta: float) -> EarlyStop:
    """Early stopping's state, replayed over the history's rows."""
    mode, best, best_epoch, wait = monitor_mode(monitor), None, None, 0
    for row in history:
        value = row.get(monitor)
        if value is None:  # an epoch of an older run that did not record it
            continue
        if improved(value, best, mode, min_delta):
            best, best_epoch, wait = value, row["epoch"], 0
        else:
            wait += 1
    return EarlyStop(monitor, best, best_epoch, wait, patience)


def top_epochs(history: list[dict], monitor: str, k: int) -> list[int]:
    """The k best epochs by `monitor`, best first; ties go to the earlier epoch (as best.pt
    has always done: only a strict improvement replaces it)."""
    sign = 1.0 if monitor_mode(monitor) == "min" else -1.0
    rows = [row for row in history if row.get(monitor) is not None]
    rows.sort(key=lambda row: (sign * row[monitor], row["epoch"]))
    return [row["epoch"] for row in rows[:k]]


def best_record(history: list[dict], monitor: str) -> dict | None:
    """checkpoint's `best`: the split and accuracy of the best epoch, and the monitored value."""
    top = top_epochs(history, monitor, 1)
    if not top:
        return None
    row = next(r for r in history if r["epoch"] == top[0])
    split = monitor.rsplit("_", 1)[0]  # "ema_val" of ema_val_loss
    return {"split": split, "accuracy": row[f"{split}_acc"], "epoch": top[0], "metric": monitor, "value": row[monitor]}


def stale_top_files(out: Path, keep: list[int]) -> list[Path]:
    """top-epoch*.pt files in `out` of epochs no longer among the best k."""
    found = []
    for path in sorted(out.glob("top-epoch*.pt")):
        match = TOP_PATTERN.fullmatch(path.name)
        if match and int(match.group(1)) not in keep:
            found.append(path)
    return found


def metric_names(splits: list[str], top5: bool, ema: bool) -> list[str]:
    """The metrics a run records: train and the evaluated splits, and the EMA's."""
    kinds = ["loss", "acc"] + (["top5"] if top5 else [])
    names = [f"{split}_{kind}" for split in ["train", *splits] for kind in kinds]
    if ema:
        names += [f"ema_{split}_{kind}" for split in splits for kind in kinds]
    return names


def check_monitored(metric: str | None, flag: str, names: list[str], classes: int) -> None:
    """A monitored metric this run does not record is refused, naming the flag."""
    if metric is None or metric in names:
        return
    why = f" (top-5 needs >= 10 classes; this network has {classes})" if metric.endswith("_top5") else ""
    raise UserError(f"{flag} {metric}: this run does not record it{why} — it records {', '.join(names)}")
