"""TensorLoader: epoch coverage, determinism, sharding, and exact augmentation goldens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from specc.errors import UserError
from specc.training.data import (
    AugmentConfig,
    TensorLoader,
    fit_preprocessing,
    flip_batch,
    torch_preprocess,
    translate_batch,
)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def indexed_data(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with i % 256 and labelled i, so a batch shows which samples it holds."""
    labels = torch.arange(count)
    images = (labels % 256).to(torch.uint8)[:, None, None, None].expand(count, 1, 2, 3).clone()
    return images, labels


def make_loader(count: int = 50, batch_size: int = 8, **kwargs) -> TensorLoader:
    images, labels = indexed_data(count)
    options = {"shuffle": True, "drop_last": False, "preprocess": identity, **kwargs}
    return TensorLoader(images, labels, batch_size, **options)


def epoch_labels(loader: TensorLoader, epoch: int) -> list[int]:
    loader.set_epoch(epoch)
    seen = []
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(x[:, 0, 0, 0], (y % 256).float())  # images travel with labels
        seen += y.tolist()
    return seen


def test_every_sample_once_per_epoch_with_a_short_last_batch():
    loader = make_loader(count=50, batch_size=8)
    assert len(loader) == 7
    sizes = [len(y) for _, y in loader]
    assert sizes == [8] * 6 + [2]
    seen = epoch_labels(loader, 0)
    assert sorted(seen) == list(range(50)) and seen != list(range(50))


def test_drop_last_and_no_shuffle():
    loader = make_loader(count=50, batch_size=8, shuffle=False, drop_last=True)
    assert len(loader) == 6
    assert epoch_labels(loader, 3) == list(range(48))
    with pytest.raises(UserError) as caught:
        make_loader(count=5, batch_size=8, drop_last=True)
    assert str(caught.value) == ("batch_size 8 with drop_last leaves no batch: only 5 samples per rank")


def test_order_depends_only_on_seed_and_epoch():
    first = epoch_labels(make_loader(seed=1), 4)
    assert epoch_labels(make_loader(seed=1), 4) == first
    assert epoch_labels(make_loader(seed=1), 5) != first
    assert epoch_labels(make_loader(seed=2), 4) != first
    # seed + epoch would collide here; the mixed seed must not.
    assert epoch_labels(make_loader(seed=2), 3) != first


def test_state_dict_resumes_the_same_epoch():
    loader = make_loader(seed=7, augment=AugmentConfig(flip=True, translate=1))
    loader.set_epoch(9)
    fresh = make_loader(seed=0, augment=AugmentConfig(flip=True, translate=1))
    fresh.load_state_dict(loader.state_dict())
    for (x1, y1), (x2, y2) in zip(loader, fresh, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_two_ranks_get_disjoint_equal_shards_covering_the_set():
    ranks = [make_loader(count=50, batch_size=4, rank=r, world_size=2) for r in range(2)]
    shards = [epoch_labels(loader, 2) for loader in ranks]
    assert len(ranks[0]) == len(ranks[1]) == 7
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(50))
    # The shards interleave the single-process permutation of the same epoch.
    single = epoch_labels(make_loader(count=50, batch_size=4), 2)
    assert shards[0] == single[0::2] and shards[1] == single[1::2]


def test_uneven_shards_are_padded_like_distributed_sampler():
    ranks = [make_loader(count=10, batch_size=2, rank=r, world_size=3) for r in range(3)]
    shards = [epoch_labels(loader, 0) for loader in ranks]
    assert [len(s) for s in shards] == [4, 4, 4] and [len(r) for r in ranks] == [2, 2, 2]
    everything = shards[0] + shards[1] + shards[2]
    assert sorted(set(everything)) == list(range(10)) and len(everything) == 12


def test_flip_batch_golden():
    x = torch.arange(12.0).reshape(2, 1, 2, 3)  # two images [[0 1 2] [3 4 5]], [[6 7 8] ...]
    out = flip_batch(x, torch.tensor([True, False]))
    assert out[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert torch.equal(out[1], x[1])


def test_translate_batch_goldens():
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3).repeat(3, 1, 1, 1)  # [[1 2 3] [4 5 6] [7 8 9]]
    offsets = torch.tensor([[1, 0], [0, -1], [-1, 1]])  # down 1; left 1; up 1 and right 1
    zeros = translate_batch(x, offsets, 1, "zeros")[:, 0].tolist()
    assert zeros[0] == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    assert zeros[1] == [[2, 3, 0], [5, 6, 0], [8, 9, 0]]
    assert zeros[2] == [[0, 4, 5], [0, 7, 8], [0, 0, 0]]
    reflect = translate_batch(x, offsets, 1, "reflect")[:, 0].tolist()
    assert reflect[0] == [[4, 5, 6], [1, 2, 3], [4, 5, 6]]  # the row above row 0 mirrors row 1
    assert reflect[1] == [[2, 3, 2], [5, 6, 5], [8, 9, 8]]
    assert reflect[2] == [[5, 4, 5], [8, 7, 8], [5, 4, 5]]


def test_translate_batch_equals_pad_then_crop():
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(6, 2, 5, 7, generator=rng)
    offsets = torch.randint(-2, 3, (6, 2), generator=rng)
    out = translate_batch(x, offsets, 2, "reflect")
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for b, (dy, dx) in enumerate(offsets.tolist()):  # the slow reference, one image at a time
        top, left = 2 - dy, 2 - dx
        assert torch.equal(out[b], padded[b, :, top : top + 5, left : left + 7])


def test_loader_applies_the_planned_augmentation():
    count = 16
    images = torch.randint(0, 256, (count, 3, 6, 6), dtype=torch.uint8)
    augment = AugmentConfig(flip=True, translate=2, padding="reflect")
    loader = TensorLoader(
        images,
        torch.arange(count),
        count,
        shuffle=True,
        drop_last=False,
        preprocess=identity,
        augment=augment,
        seed=3,
    )
    loader.set_epoch(1)
    index, flips, offsets = loader.epoch_plan()
    assert 0 < flips.sum() < count and offsets.abs().max() == 2  # both draws really vary
    ((x, y),) = list(loader)
    assert torch.equal(y, index)
    expected = translate_batch(flip_batch(images[index].float(), flips), offsets, 2, "reflect")
    assert torch.equal(x, expected)
    assert not torch.equal(x, images[index].float())


def test_torch_preprocess_matches_numpy():
    images = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    for kind in ("normalize", "gcn_zca", "none"):
        pre = fit_preprocessing(kind, images.numpy())
        loader = TensorLoader(
            images,
            torch.zeros(64, dtype=torch.int64),
            64,
            shuffle=False,
            drop_last=False,
            preprocess=torch_preprocess(pre, "cpu"),
        )
        ((x, _),) = list(loader)
        np.testing.assert_allclose(x.numpy(), pre.apply(images.numpy()), rtol=1e-4, atol=1e-4)


def test_argument_errors():
    with pytest.raises(UserError, match="^augment.padding: 'wrap': expected zeros or reflect$"):
        AugmentConfig(padding="wrap")
    with pytest.raises(UserError, match="translate: -1 must be a whole number >= 0"):
        AugmentConfig(translate=-1)
    with pytest.raises(UserError, match="reflect padding needs images larger than 3 pixels"):
        make_loader(augment=AugmentConfig(translate=3, padding="reflect"))  # images are 2x3
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(torch.zeros(2, 1, 2, 2), torch.zeros(2), 1, shuffle=False, drop_last=False, preprocess=identity)
