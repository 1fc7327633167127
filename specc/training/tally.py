"""An epoch's running numbers, kept on the training device.

A training step adds its loss, its correct predictions (top-1 and top-5) and its batch size
to four float64 sums on the device, and notes (also on the device) the first step whose loss was not finite.
Nothing of that reaches the host during the step: a `.item()` per step would make the CPU
wait for the GPU every step, so steps could no longer be queued ahead. The host looks only
every SYNC_EVERY steps and at the end of the epoch (`sync`), which is also when the processes
of a distributed run sum their numbers and agree whether to stop.

On the CPU every figure is what the per-step version computed: the same float64 additions in
the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specc.training.distributed import World, all_min, all_sum

SYNC_EVERY = 25  # steps between two looks from the host (and, with several processes, collectives)
_NONE = float("inf")  # "no step yet" for the first non-finite step


@dataclass(frozen=True)
class Snapshot:
    """The host's look at an epoch so far, the same on every rank."""

    loss_sum: float  # summed over ranks
    correct: float
    seen: float
    correct5: float  # top-5 (counted with >= 10 classes only; else 0)
    stop: bool  # some rank was asked to stop (Ctrl-C / SIGTERM)
    first_bad: int | None  # the first step (0-based) whose loss was not finite on some rank
    bad_loss: float | None  # that loss, when it was this rank's

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1.0)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.seen, 1.0)

    @property
    def top5(self) -> float:
        return self.correct5 / max(self.seen, 1.0)


class EpochTally:
    """The running sums of one epoch on `device`, starting from `partial` (the sums of an
    interrupted epoch, from a checkpoint) when given; `top5` counts top-5 hits too."""

    def __init__(self, device: torch.device, partial: dict | None = None, top5: bool = False):
        self.top5 = top5
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss * n, correct, n, correct5
        if partial:
            start = [float(partial.get(k, 0.0)) for k in ("loss_sum", "correct", "seen", "correct5")]
            self.sums += torch.tensor(start, dtype=torch.float64, device=device)
        self.first_bad = torch.full((), _NONE, dtype=torch.float64, device=device)
        self.bad_loss = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, step: int, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one step: `loss` the batch mean (a 0-d tensor), `logits` (B, classes)."""
        count = len(labels)
        self.sums[0] += loss.double() * count
        self.sums[1] += (logits.argmax(dim=1) == labels).sum()
        self.sums[2] += count
        if self.top5:  # (B, 5) best classes; a hit when the label is among them
            self.sums[3] += (logits.topk(5, dim=1).indices == labels[:, None]).any(dim=1).sum()
        first = ~torch.isfinite(loss) & (self.first_bad == _NONE)
        self.first_bad = torch.where(first, float(step), self.first_bad)
        self.bad_loss = torch.where(first, loss.double(), self.bad_loss)

    def sync(self, world: World, stop_requested: bool = False) -> Snapshot:
        """Sum over ranks and bring to the host, in one transfer (a collective: every rank
        calls it at the same step). The running sums themselves stay this rank's own."""
        device = self.sums.device
        summed = all_sum(torch.cat([self.sums, torch.tensor([float(stop_requested)], device=device).double()]), world)
        first_bad = all_min(self.first_bad.reshape(1).clone(), world)
        host = torch.cat([summed, first_bad, self.first_bad.reshape(1), self.bad_loss.reshape(1)]).tolist()
        loss_sum, correct, seen, correct5, stop, first, mine, bad_loss = host
        found = first != _NONE
        return Snapshot(
            loss_sum,
            correct,
            seen,
            correct5,
            stop > 0,
            int(first) if found else None,
            bad_loss if found and mine == first else None,
        )
