"""Streaming batches: images decoded in DataLoader worker processes, for datasets that do not
fit in memory (`--data-mode stream`).

The plan of an epoch (order, flips, offsets) is `EpochPlan`'s, the in-memory loader's own, a
pure function of (seed, epoch): the main process cuts it into batches of positions and hands
them, in order, to a `torch.utils.data.DataLoader` whose workers only decode (a
`StreamDataset.read` per batch). A DataLoader returns batches in the order it was given them
whatever its number of workers, decoding is deterministic, and everything random happens in
the main process on the device (flip, translate, as in memory) — so the batches are the same
for any `--workers`, the same as the in-memory loader's, and a run stopped after step k of an
epoch resumes by handing the workers the plan from batch k on.

On CUDA the workers' batches land in pinned memory and are copied with `non_blocking=True`,
so the copy of batch k+1 overlaps the step of batch k.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from specc.errors import UserError
from specc.preprocessing import Preprocessing
from specc.training.data.loader import AugmentConfig, EpochPlan
from specc.training.data.preprocess import channel_histograms, fit_preprocessing, normalize_from_histograms
from specc.training.data.stream import StreamDataset

PREFETCH = 4  # batches each worker decodes ahead


class _Batches(Dataset):
    """`dataset[positions]` is the batch of those images as a uint8 tensor (B, C, H, W);
    with `histograms`, their (C, 256) channel histograms instead (for fitting "normalize")."""

    def __init__(self, dataset: StreamDataset, histograms: bool = False):
        self.dataset, self.histograms = dataset, histograms

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, positions: Sequence[int]) -> torch.Tensor:
        images = self.dataset.read(positions)
        return torch.from_numpy(channel_histograms(images) if self.histograms else images)


class _PlanSampler(Sampler):
    """Yields the batches (lists of positions) set last; the main process sets them before
    each pass, so persistent workers serve every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _reader(dataset: Dataset, sampler: Sampler, workers: int, pin: bool, persistent: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=None,  # the sampler yields whole batches of positions
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=PREFETCH if workers > 0 else None,
        # Its own generator: by default a DataLoader draws its workers' base seed from the
        # global RNG at every pass, which would shift the dropout masks of the training step.
        generator=torch.Generator(),
    )


class StreamLoader(EpochPlan):
    """Batches of (images float32 (B, C, H, W), labels int64 (B,)) on `device`, decoded from
    `dataset` by `workers` processes (0: in this process)."""

    def __init__(
        self,
        dataset: StreamDataset,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        preprocess: Callable[[torch.Tensor], torch.Tensor],
        augment: AugmentConfig | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
    ):
        super().__init__(
            len(dataset),
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            augment=augment or AugmentConfig(),
            image_size=dataset.image_shape[1:],
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        self.device = torch.device(device)
        self.labels = torch.from_numpy(dataset.labels)  # (N,) on the CPU: small
        self.preprocess = preprocess
        self.sampler = _PlanSampler()
        self.reader = _reader(_Batches(dataset), self.sampler, workers, self.device.type == "cuda", persistent=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The current epoch's batches from batch `start` on (an exact mid-epoch resume)."""
        indices, flips, offsets = self.epoch_plan()
        flips, offsets = flips.to(self.device), offsets.to(self.device)
        size = self.batch_size
        self.sampler.batches = [indices[i * size : (i + 1) * size].tolist() for i in range(start, len(self))]
        for i, raw in zip(range(start, len(self)), decoded(self.reader)):
            batch = slice(i * size, (i + 1) * size)
            x = raw.to(self.device, non_blocking=True).float()  # (B, C, H, W), 0..255
            y = self.labels.index_select(0, indices[batch]).to(self.device, non_blocking=True)
            yield self.augmented(self.preprocess(x), flips[batch], offsets[batch]), y


class StreamSplit:
    """An evaluated split read in worker processes: what `evaluate` takes instead of a tensor
    of images (`loader.eval_batches` asks it for its batches)."""

    def __init__(self, dataset: StreamDataset, device: torch.device, workers: int = 0):
        self.dataset, self.device = dataset, device
        self.sampler = _PlanSampler()
        # Not persistent: evaluation runs once an epoch, and idle workers would hold memory.
        self.reader = _reader(_Batches(dataset), self.sampler, workers, device.type == "cuda", persistent=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, rank: int, world_size: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The strided shard `rank::world_size` in batches: (uint8 (B, C, H, W), labels (B,))."""
        shard = np.arange(rank, len(self.dataset), world_size)
        self.sampler.batches = [shard[s : s + batch_size].tolist() for s in range(0, len(shard), batch_size)]
        labels = torch.from_numpy(self.dataset.labels)
        for positions, raw in zip(self.sampler.batches, decoded(self.reader)):
            y = labels.index_select(0, torch.as_tensor(positions, dtype=torch.int64))
            yield raw.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def decoded(reader: DataLoader) -> Iterator:
    """The reader's batches. A worker's UserError (a corrupt image) comes back as its own one
    line: torch re-raises it in this process with the worker's traceback as the message."""
    try:
        yield from reader
    except UserError as exc:
        raise UserError(worker_message(str(exc))) from None


def worker_message(text: str) -> str:
    """The original message inside torch's "Caught UserError in DataLoader worker process 0.
    Original Traceback (...): ... specc.errors.UserError: MESSAGE" (the message itself when
    the error was raised in this process)."""
    lines = text.strip().splitlines()
    prefix = f"{UserError.__module__}.{UserError.__qualname__}: "
    found = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
    return found[-1] if found else (lines[-1] if lines else text)


def fit_streamed(kind: str, dataset: StreamDataset, workers: int = 0, batch_size: int = 256) -> Preprocessing:
    """`fit_preprocessing` of a split that is not in memory, with the same result: "normalize"
    sums the channel histograms of every image, decoded by the workers; "gcn_zca" needs the
    whole split at once (its (D, D) whitening matrix) and is refused."""
    if kind == "gcn_zca":
        raise UserError(
            "preprocessing gcn_zca needs the whole training set in memory (its whitening matrix is"
            " D x D): use --data-mode memory on a dataset that fits, or preprocessing normalize"
        )
    if kind == "none":
        return fit_preprocessing("none", np.zeros((1, *dataset.image_shape), dtype=np.uint8))
    sampler = _PlanSampler()
    positions = np.arange(len(dataset))
    sampler.batches = [positions[s : s + batch_size].tolist() for s in range(0, len(dataset), batch_size)]
    total = np.zeros((dataset.image_shape[0], 256), dtype=np.int64)
    for histograms in decoded(_reader(_Batches(dataset, histograms=True), sampler, workers, False, persistent=False)):
        total += histograms.numpy()
    return normalize_from_histograms(total, dataset.image_shape)
