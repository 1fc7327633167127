"""What a training run says: the banner, the resume and stop lines, the divergence error and
the dead-start warning. Epochs and steps are numbered from 1 everywhere, as the epoch lines
number them (`specc.training.checkpoint.position`): "in epoch 2 after step 4/16" is where a
stop leaves a run and where the resume picks it up; "epoch 2, step 5/16" names one step."""

from __future__ import annotations

import math
from pathlib import Path

from specc.training.checkpoint import LAST, position


def resume_line(path: Path, payload: dict, changes: str, notes: list[str]) -> str:
    """`resuming runs/x/last.pt (in epoch 2 after step 4/16) with epochs 3 -> 4; ...`."""
    steps = (payload.get("scheduler") or {}).get("steps_per_epoch")
    text = f"resuming {path} ({position(payload['epoch'], payload['step'], steps)})"
    if changes:
        text += f" with {changes}"
    if notes:
        text += "; " + "; ".join(notes) + " — it continues, but not bit-identically to an uninterrupted run"
    return text


def threads_note(saved: object, now: int) -> str | None:
    """On the CPU the thread count decides how kernels split their sums, so the last bits of
    every result depend on it, and training may amplify them (`specc.training.setup.configure`)."""
    if not isinstance(saved, int) or saved == now:
        return None
    return f"the run used {saved} CPU thread{'s' if saved != 1 else ''} per process, this one {now}"


def processes_note(saved: int, now: int) -> str:
    return f"the run had {saved} process{'es' if saved != 1 else ''}, this one {now}"


def stop_line(signal_name: str, epoch: int, step: int, steps: int, out: Path) -> str:
    """`SIGTERM: stopped in epoch 2 after step 4/16; checkpoint runs/x/last.pt — continue ...`."""
    return (
        f"{signal_name}: stopped {position(epoch, step, steps)}; checkpoint {out / LAST}"
        f" — continue with `specc train --resume {out}`"
    )


def diverged(
    epoch: int, step: int, steps: int, lr: float, value: float | None, last_good: int | None, out: Path
) -> str:
    """The error of a run whose loss became NaN/inf at `step` (0-based) of `epoch` (0-based)."""
    kept = (
        f"the last good checkpoint {out / LAST} (epoch {last_good}) is kept"
        if last_good is not None
        else "no checkpoint was written yet"
    )
    what = f"{value}" if value is not None and not math.isfinite(value) else "not finite (on another process)"
    return (
        f"epoch {epoch + 1}, step {step + 1}/{steps}: the loss is {what} at learning rate {lr:.4g}"
        f" — training diverged; {kept}. Lower the learning rate (--lr) or add warm-up"
        " (--set train.warmup_epochs=1)"
    )


def dead_start(row: dict, classes: int) -> str | None:
    """A warning when the first epoch's loss sat at ln(classes): logits that are all equal."""
    chance = math.log(classes)
    stuck = abs(row["train_loss"] - chance) < 0.002 * chance
    if not (stuck and row["train_acc"] < 1.2 / classes):
        return None
    return (
        f"warning: epoch 1: the training loss stayed at ln({classes}) = {chance:.4f}, chance level"
        " — the network is not learning. Likely causes: a ReLU on the class scores whose inputs all"
        " went negative (dead logits; `specc check` warns about it — activation: none on the last"
        " conv fixes it), weights initialised too small (init: he is the default), or a learning"
        " rate too high for the start (try --lr 0.01 or --set train.warmup_epochs=2)"
    )


def banner(
    *,
    name: str,
    params: int,
    dataset: str | None,
    shape: tuple[int, int, int],
    classes: int,
    data_line: str,
    recipe_line: str,
    mode: str,
    out: Path,
    resumed_at: str | None,
) -> list[str]:
    """The four lines a run starts with."""
    c, h, w = shape
    return [
        f"specc train: {name} ({params:,} parameters) on {dataset}, {c}x{h}x{w}, {classes} classes",
        f"  data: {data_line}",
        f"  recipe: {recipe_line}; {mode}",
        f"  run dir: {out}" + (f" (continuing {resumed_at})" if resumed_at else ""),
    ]
