"""Evaluation: loss, accuracy, top-5 accuracy (>= 10 classes) and the confusion matrix of a
model on a whole split.

Used after every training epoch and by `specc eval`. With several processes each rank takes
the strided shard `rank::world_size` (no padding, so no sample counts twice) and the sums
are added up over ranks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from specc.training.data.loader import eval_batches
from specc.training.distributed import World, all_sum

if TYPE_CHECKING:
    from specc.training.data.streamloader import StreamSplit


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Results on one split; `confusion[true, predicted]` counts images."""

    loss: float
    confusion: np.ndarray  # (classes, classes) int64
    top5_correct: int | None = None  # images whose label is among the 5 highest scores (>= 10 classes)

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.count, 1))

    @property
    def top5(self) -> float | None:
        return None if self.top5_correct is None else self.top5_correct / max(self.count, 1)

    @property
    def error(self) -> float:
        return 1.0 - self.accuracy

    def per_class_accuracy(self) -> np.ndarray:
        """Recall of each class (NaN for a class with no images)."""
        totals = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(self.confusion) / totals


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor | StreamSplit,
    labels: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    *,
    classes: int,
    batch_size: int = 500,
    world: World | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    channels_last: bool = False,
) -> Evaluation:
    """Mean cross-entropy and confusion matrix of `model` on uint8 `images` (N, C, H, W)
    with int64 `labels` (N,), both already on the model's device."""
    world = world or World()
    was_training = model.training
    model.eval()
    device = images.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(classes * classes, dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    # This rank's strided shard, from the tensor on the device or decoded by a streamed split's workers.
    for raw, y in eval_batches(images, labels, world.rank, world.size, batch_size):
        x = preprocess(raw.float())  # (B, C, H, W) float32
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(x)  # (B, classes)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        confusion += torch.bincount(y * classes + logits.argmax(dim=1), minlength=classes * classes)
        if classes >= 10:
            top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum()
    all_sum(loss_sum, world)
    all_sum(confusion, world)
    all_sum(top5, world)
    model.train(was_training)
    matrix = confusion.reshape(classes, classes).cpu().numpy()
    hits = int(top5.item()) if classes >= 10 else None
    return Evaluation(float(loss_sum.item()) / max(int(matrix.sum()), 1), matrix, hits)
