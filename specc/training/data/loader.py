"""On-device batching and augmentation: the whole split is one tensor on the device.

Per epoch the loader draws, from a CPU generator seeded by (seed, epoch), one permutation
plus every sample's flip bit and translation offsets, moves them to the device in one copy,
and then only slices: a batch is gathered, converted to float, preprocessed and augmented
with whole-batch tensor ops. There is no per-sample Python and no host round trip per batch.

Reproducibility and resume: an epoch's order and augmentation are a pure function of
(seed, epoch), the same on CPU and CUDA. Training resumes at epoch boundaries, so
`state_dict()` holds just those two numbers; no generator state needs saving.

Multi-process: every rank draws the same permutation and takes the strided shard
`rank::world_size`, padded with repeated indices like `torch.utils.data.DistributedSampler`
so all ranks see the same number of batches. Evaluation with world_size > 1 therefore sees
up to world_size - 1 duplicated samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from specc.errors import UserError
from specc.preprocessing import Preprocessing

PADDINGS = ("zeros", "reflect")


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation: random horizontal flip and random translation by up to
    `translate` pixels per axis (pad-and-crop, padding "zeros" or "reflect").

    Augmentation runs after preprocessing, so "zeros" pads with the preprocessed zero,
    which for "normalize" is the dataset's mean colour.
    """

    flip: bool = False
    translate: int = 0
    padding: str = "zeros"

    def __post_init__(self) -> None:
        if not isinstance(self.translate, int) or self.translate < 0:
            raise UserError(f"augment.translate: {self.translate!r} must be a whole number >= 0")
        if self.padding not in PADDINGS:
            raise UserError(f"augment.padding: '{self.padding}': expected zeros or reflect")


def flip_batch(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images of `x` (B, C, H, W) where `mask` (B,) is true."""
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def translate_batch(x: torch.Tensor, offsets: torch.Tensor, max_shift: int, padding: str) -> torch.Tensor:
    """Shift each image of `x` (B, C, H, W) by `offsets` (B, 2) = (dy, dx) pixels:
    out[b, :, i, j] = x[b, :, i - dy, j - dx], and padding where that falls outside.

    Every |dy|, |dx| must be <= max_shift (not checked: that would sync the device).
    Equivalent to padding by max_shift and cropping at (max_shift - dy, max_shift - dx).
    """
    _, _, height, width = x.shape
    t = max_shift
    mode = "constant" if padding == "zeros" else "reflect"
    padded = F.pad(x, (t, t, t, t), mode=mode)  # (B, C, H + 2t, W + 2t)
    batch, channels = x.shape[:2]
    rows = (t - offsets[:, 0])[:, None] + torch.arange(height, device=x.device)  # (B, H)
    cols = (t - offsets[:, 1])[:, None] + torch.arange(width, device=x.device)  # (B, W)
    # Two gathers (rows, then columns): several times faster on the CPU than one advanced
    # index over (B, H, W), and the result is already (B, C, H, W) contiguous.
    out = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, width + 2 * t))
    return out.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))


def torch_preprocess(
    preprocessing: Preprocessing, device: torch.device | str
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`preprocessing.apply` for float batches (B, C, H, W) on the 0..255 scale, on device."""
    kind = preprocessing.kind
    if kind == "none":
        return lambda x: x * (1.0 / 255)
    if kind == "normalize":
        # (x / 255 - mean) / std folded into one multiply-add per element.
        std = torch.as_tensor(preprocessing.std, device=device)
        mean = torch.as_tensor(preprocessing.mean, device=device)
        gain = (1.0 / (255 * std))[:, None, None]
        bias = (-mean / std)[:, None, None]
        return lambda x: torch.addcmul(bias, x, gain)
    gcn = preprocessing.gcn
    zca_mean = torch.as_tensor(preprocessing.mean, device=device)  # (D,)
    matrix = torch.as_tensor(preprocessing.matrix, device=device)  # (D, D)

    def gcn_zca(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1)  # (B, D)
        centred = flat - flat.mean(dim=1, keepdim=True)
        norms = torch.sqrt(gcn["sqrt_bias"] + centred.square().sum(dim=1)) / gcn["scale"]
        norms = torch.where(norms < gcn["min_divisor"], torch.ones_like(norms), norms)
        return ((centred / norms[:, None] - zca_mean) @ matrix).reshape(x.shape)

    return gcn_zca


class EpochPlan:
    """What every loader of a training split shares: the batches per epoch and each epoch's
    plan (order, flips, offsets), a pure function of (seed, epoch) — so the in-memory loader
    and the streaming one (`specc.training.data.streamloader`) give the same batches.

    Call `set_epoch(e)` before iterating each epoch, as with DistributedSampler; iterating
    twice without it repeats the same epoch.
    """

    def __init__(
        self,
        count: int,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        augment: AugmentConfig,
        image_size: tuple[int, int],
        seed: int,
        rank: int,
        world_size: int,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if batch_size < 1:
            raise UserError(f"batch_size {batch_size} must be at least 1")
        height, width = image_size
        if augment.padding == "reflect" and augment.translate >= min(height, width):
            raise UserError(
                f"augment.translate {augment.translate} with reflect padding needs images larger "
                f"than {augment.translate} pixels, got {height}x{width}"
            )
        self.count = count
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.num_samples = math.ceil(count / world_size)  # per rank, after padding
        if len(self) == 0:
            rule = " with drop_last" if drop_last else ""
            raise UserError(f"batch_size {batch_size}{rule} leaves no batch: only {self.num_samples} samples per rank")

    def __len__(self) -> int:
        """Batches per epoch (equal on every rank)."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        """What an exact resume at an epoch boundary needs (see the module docstring)."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore `state_dict()` output."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])

    def epoch_plan(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's (indices (S,), flip mask (S,), offsets (S, 2)) for the current epoch,
        on the CPU; S = num_samples. Draws the same numbers on every rank and device."""
        count = self.count
        total = self.num_samples * self.world_size
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        if self.shuffle:
            order = torch.randperm(count, generator=generator)
        else:
            order = torch.arange(count)
        if total > count:  # pad by wrapping around, as DistributedSampler does
            order = torch.cat([order, order.repeat(math.ceil((total - count) / count))[: total - count]])
        flips = torch.rand(total, generator=generator) < 0.5
        shift = self.augment.translate
        offsets = torch.randint(-shift, shift + 1, (total, 2), generator=generator)
        shard = slice(self.rank, total, self.world_size)
        return order[shard], flips[shard], offsets[shard]

    def augmented(self, x: torch.Tensor, flips: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """`x` (B, C, H, W), preprocessed, with this batch's flips and translations applied."""
        if self.augment.flip:
            x = flip_batch(x, flips)
        if self.augment.translate:
            x = translate_batch(x, offsets, self.augment.translate, self.augment.padding)
        return x


class TensorLoader(EpochPlan):
    """Batches of (images float32 (B, C, H, W), labels int64 (B,)) from tensors on a device."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        preprocess: Callable[[torch.Tensor], torch.Tensor],
        augment: AugmentConfig = AugmentConfig(),
        device: torch.device | str | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must be ({len(images)},), got {tuple(labels.shape)}")
        super().__init__(
            len(images),
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            augment=augment,
            image_size=(images.shape[2], images.shape[3]),
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)  # (N, C, H, W) uint8: one copy, kept for good
        self.labels = labels.to(self.device, torch.int64)  # (N,)
        self.preprocess = preprocess

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The current epoch's batches from batch `start` on: a run interrupted mid-epoch
        resumes exactly, since the plan is a pure function of (seed, epoch)."""
        indices, flips, offsets = (t.to(self.device) for t in self.epoch_plan())
        for i in range(start, len(self)):
            batch = slice(i * self.batch_size, (i + 1) * self.batch_size)
            index = indices[batch]
            # index_select, not images[index]: advanced indexing is ~10x slower on the CPU.
            x = self.preprocess(self.images.index_select(0, index).float())  # (B, C, H, W) float32
            yield self.augmented(x, flips[batch], offsets[batch]), self.labels.index_select(0, index)


def eval_batches(images, labels: torch.Tensor, rank: int, world_size: int, batch_size: int):
    """(uint8 images (B, C, H, W), labels (B,)) of the strided shard `rank::world_size` of a
    split (no padding, so no image counts twice), on the split's device. `images` is a
    tensor on the device, or a streamed split (`streamloader.StreamSplit`) that decodes its
    batches in worker processes."""
    if not isinstance(images, torch.Tensor):
        yield from images.batches(rank, world_size, batch_size)
        return
    shard = torch.arange(rank, len(images), world_size, device=images.device)
    for start in range(0, len(shard), batch_size):
        index = shard[start : start + batch_size]
        yield images.index_select(0, index), labels.index_select(0, index)


def _epoch_seed(seed: int, epoch: int) -> int:
    """Mix seed and epoch so that (seed, epoch + 1) and (seed + 1, epoch) differ."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])
