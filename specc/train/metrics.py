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

# One row per epoch; the val columns appear only when the run holds out a validation set.
COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "seconds",
    "eval_seconds",
    "images_per_s",
    "elapsed",
)


def write_config(path: Path, record: dict) -> None:
    """RUN_DIR/config.yaml: everything the run used (spec, recipe, versions, seed, data);
    `record` is `specc.train.rundir.config_record`'s, whose first key marks the folder as a run."""
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
    if history:
        plot_curves(out / "curves.png", history)


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
    """Scalars per epoch under RUN_DIR/tensorboard when tensorboard is installed; else nothing."""

    def __init__(self, out: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.writer = None
            return
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

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
def epoch_line(row: dict, epochs: int) -> str:
    """`epoch 3/20  train 0.512 81.2%  test 0.450 83.0%  lr 0.01  55.2s  1086 img/s`."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train {row['train_loss']:.4f} {100 * row['train_acc']:.2f}%"]
    for split in ("val", "test"):
        if f"{split}_acc" in row:
            parts.append(f"{split} {row[f'{split}_loss']:.4f} {100 * row[f'{split}_acc']:.2f}%")
    parts += [f"lr {row['lr']:.4g}", f"{row['seconds']:.1f}s", f"{row['images_per_s']:.0f} img/s"]
    return "  ".join(parts)


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

    def update(self, done: int, images: float, loss: float, accuracy: float) -> None:
        """Loss, accuracy and speed, whenever the loop has synced them to the host."""
        if self.bar is None:
            return
        rate = images / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"loss {loss:.4f} acc {100 * accuracy:.1f}% {rate:.0f} img/s", refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
