"""The learning-rate schedule as a pure function of (epoch, step).

No scheduler object carries hidden state: the rate of any step follows from the recipe and
the step's position, so a resumed run (even one stopped mid-epoch) gets exactly the rates
an uninterrupted run would, and a checkpoint only records where the run stands.
"""

from __future__ import annotations

import math

from specc.training.config import TrainConfig


def lr_at(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate of step `step` (0-based) of epoch `epoch` (0-based)."""
    elapsed = epoch + step / steps_per_epoch  # epochs done when this step starts
    warmup = cfg.warmup_epochs
    if warmup > 0 and elapsed < warmup:
        # Linear from lr/W to lr over the first W steps (never 0: a zero step is wasted).
        return cfg.lr * (elapsed + 1 / steps_per_epoch) / (warmup + 1 / steps_per_epoch)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "multistep":
        # The paper: "multiplied by 0.1 after epochs 200, 250, 300" -> epochs 200.. use lr/10.
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    progress = (elapsed - warmup) / max(cfg.epochs - warmup, 1e-12)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def describe(cfg: TrainConfig) -> str:
    """One line for the run header, e.g. `sgd lr 0.01 multistep x0.1 at [200, 250, 300]`."""
    if cfg.schedule == "multistep":
        shape = f"multistep x{cfg.gamma:g} at {cfg.milestones}"
    elif cfg.schedule == "cosine":
        shape = f"cosine to {cfg.min_lr:g}"
    else:
        shape = "constant"
    warm = f", {cfg.warmup_epochs:g} warm-up epochs" if cfg.warmup_epochs else ""
    extra = " nesterov" if cfg.nesterov else ""
    return f"{cfg.optimizer}{extra} lr {cfg.lr:g} {shape}{warm}"
