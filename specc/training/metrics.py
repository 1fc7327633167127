"""What a run shows and records: the progress bar or per-epoch lines, metrics.jsonl,
metrics.csv, curves.png, config.yaml and (when installed) TensorBoard.

The metric files are rewritten whole from the checkpoint's history after every epoch, so
they always agree with `last.pt` — also after a kill between the two writes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

import yaml

from specc.fileio import atomic_write, write_text

# One row per epoch; the val columns appear only when the run holds out a validation set,
# top-5 with >= 10 classes, ema_* with --ema.
COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "train_top5",
    "val_loss",
    "val_acc",
    "val_top5",
    "test_loss",
    "test_acc",
    "test_top5",
    "ema_val_loss",
    "ema_val_acc",
    "ema_val_top5",
    "ema_test_loss",
    "ema_test_acc",
    "ema_test_top5",
    "lr",
    "seconds",
    "eval_seconds",
    "images_per_s",
    "elapsed",
)


def write_config(path: Path, record: dict) -> None:
    """RUN_DIR/config.yaml: everything the run used (spec, recipe, versions, seed, data);
    `record` is `specc.training.rundir.config_record`'s, whose first key marks the folder as a run."""
    write_text(path, yaml.safe_dump(record, sort_keys=False, allow_unicode=True, width=100))


def write_metrics(out: Path, history: list[dict]) -> None:
    """metrics.jsonl, metrics.csv and curves.png from the full history."""
    write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    columns = [c for c in COLUMNS if any(c in row for row in history)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text(out / "metrics.csv", buffer.getvalue())
    if history and _has_matplotlib():  # curves.png needs the train extra's matplotlib; the rest does not
        plot_curves(out / "curves.png", history)


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def plot_curves(path: Path, history: list[dict]) -> None:
    """Loss and accuracy per epoch, one line per split (Agg canvas: no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    epochs = [row["epoch"] for row in history]
    for i, (metric, title) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        axes = figure.add_subplot(1, 2, i + 1)
        for split in ("train", "val", "test"):
            key = f"{split}_{metric}"
            if any(key in row for row in history):
                axes.plot(epochs, [row.get(key, math.nan) for row in history], marker="o", markersize=3, label=split)
        axes.set_xlabel("epoch")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    atomic_write(path, lambda f: figure.savefig(f, format="png"))


class TensorBoard:
    """Scalars per epoch under RUN_DIR/tensorboard when tensorboard is installed; else nothing
    (unless per-step scalars were asked for: `log_every`, which then names what to install).
    Per-step scalars (`step/loss`, `step/lr`, `step/images_per_s`) are indexed by global step,
    epoch scalars (`train/loss`, `test/acc`, ...) by epoch."""

    def __init__(self, out: Path, log_every: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            if log_every:
                from specc.errors import UserError

                raise UserError(
                    f"--log-every {log_every}: TensorBoard is not installed — pip install tensorboard (or specc[train])"
                ) from None
            self.writer = None
            return
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))
        self.last: tuple[int, float] | None = None  # (global step, time) of the last step scalars

    def log_step(self, global_step: int, loss: float, lr: float, images: int) -> None:
        """Per-step scalars; images/s over the steps since the previous call (`images` per step)."""
        if self.writer is None:
            return
        now = time.perf_counter()
        self.writer.add_scalar("step/loss", loss, global_step)
        self.writer.add_scalar("step/lr", lr, global_step)
        if self.last is not None and global_step > self.last[0]:
            rate = (global_step - self.last[0]) * images / max(now - self.last[1], 1e-9)
            self.writer.add_scalar("step/images_per_s", rate, global_step)
        self.last = (global_step, now)

    def log(self, row: dict) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# -- console -------------------------------------------------------------------------------
def epoch_line(row: dict, epochs: int, eta: float | None = None) -> str:
    """`epoch 3/20  train 0.5120 81.20%  test 0.4500 83.00% top5 99.10%  lr 0.01  55.2s
    1086 img/s  eta 15m36s` (top-5 with >= 10 classes, `ema test ...` with EMA weights, and
    the whole run's ETA while epochs remain)."""
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for split in ("train", "val", "test", "ema_val", "ema_test"):
        if f"{split}_acc" in row:
            text = f"{split.replace('_', ' ')} {row[f'{split}_loss']:.4f} {100 * row[f'{split}_acc']:.2f}%"
            if f"{split}_top5" in row:
                text += f" top5 {100 * row[f'{split}_top5']:.2f}%"
            parts.append(text)
    parts += [f"lr {row['lr']:.4g}", f"{row['seconds']:.1f}s", f"{row['images_per_s']:.0f} img/s"]
    if eta is not None:
        parts.append(f"eta {duration(eta)}")
    return "  ".join(parts)


def duration(seconds: float) -> str:
    """`4m05s`, `1h02m03s`."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Eta:
    """The whole run's time to go: training steps left at this session's mean seconds per step
    (the current epoch's rate until an epoch is done), plus evaluations left at the mean
    evaluation time. Early stopping can only make the run shorter."""

    def __init__(self) -> None:
        self.step_seconds, self.steps, self.eval_seconds, self.evals = 0.0, 0, 0.0, 0

    def add_epoch(self, seconds: float, steps: int, eval_seconds: float) -> None:
        self.step_seconds, self.steps = self.step_seconds + seconds, self.steps + steps
        self.eval_seconds, self.evals = self.eval_seconds + eval_seconds, self.evals + 1

    def remaining(self, steps_left: int, evals_left: int, rate: float | None = None) -> float | None:
        """Seconds to go; `rate` (seconds per step measured now) when no epoch is done yet."""
        per_step = self.step_seconds / self.steps if self.steps else rate
        if per_step is None:
            return None
        per_eval = self.eval_seconds / self.evals if self.evals else 0.0
        return steps_left * per_step + evals_left * per_eval


class Progress:
    """A tqdm bar per epoch on a terminal (loss, accuracy, images/s, ETA); silent otherwise,
    where the per-epoch line says it all."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None

    def start(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(
            total=steps, initial=done, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, dynamic_ncols=True
        )
        self.started, self.first = time.perf_counter(), done

    def tick(self, done: int) -> None:
        """Batches done so far (known on the host: costs the device nothing)."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def update(self, done: int, images: float, loss: float, accuracy: float, eta: float | None = None) -> None:
        """Loss, accuracy, speed and the whole run's ETA, whenever the loop has synced them."""
        if self.bar is None:
            return
        rate = images / max(time.perf_counter() - self.started, 1e-9)
        run = f" run eta {duration(eta)}" if eta is not None else ""
        self.bar.set_postfix_str(f"loss {loss:.4f} acc {100 * accuracy:.1f}% {rate:.0f} img/s{run}", refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
