"""Preprocessing: statistics after fitting, GCN + ZCA whitening, and dict round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from specc.errors import UserError
from specc.preprocessing import Preprocessing
from specc.training.data.preprocess import fit_preprocessing, global_contrast_normalize


def channel_skewed_images(count: int = 400, seed: int = 0) -> np.ndarray:
    """(N, 3, 5, 5) uint8 whose channels have clearly different means and spreads."""
    rng = np.random.default_rng(seed)
    centres, spreads = np.array([40, 128, 200]), np.array([10, 50, 25])
    values = rng.normal(centres[:, None, None], spreads[:, None, None], size=(count, 3, 5, 5))
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def smooth_images(count: int, seed: int = 0) -> np.ndarray:
    """(N, 3, 4, 4) uint8 with strongly correlated pixels (coarse blocks plus noise), so
    their covariance is far from a multiple of the identity."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 40, size=(count, 3, 2, 2)).repeat(2, axis=2).repeat(2, axis=3)
    noise = rng.normal(0, 8, size=(count, 3, 4, 4))
    return np.clip(np.rint(128 + coarse + noise), 0, 255).astype(np.uint8)


def test_normalize_gives_zero_mean_unit_std_per_channel():
    images = channel_skewed_images()
    pre = fit_preprocessing("normalize", images)
    scaled = images.astype(np.float64) / 255
    np.testing.assert_allclose(pre.mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(pre.std, scaled.std(axis=(0, 2, 3)), rtol=1e-5)
    out = pre.apply(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # Float input on the 0..255 scale is the same as uint8 input.
    np.testing.assert_array_equal(pre.apply(images.astype(np.float32)), out)


def test_none_scales_to_unit_range():
    images = channel_skewed_images(count=3)
    out = fit_preprocessing("none", images).apply(images)
    np.testing.assert_allclose(out, images / 255, rtol=1e-6)


def test_gcn_matches_pylearn2_definition():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(5, 48))
    x[4] = 7.0  # a constant image must stay zero, not divide by zero
    out = global_contrast_normalize(x, scale=55.0, sqrt_bias=0.0, min_divisor=1e-8)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out[:4], axis=1), 55.0)
    np.testing.assert_array_equal(out[4], 0)
    # Scale invariance: GCN of 2x is GCN of x.
    np.testing.assert_allclose(
        global_contrast_normalize(2 * x[:4], scale=55.0, sqrt_bias=0.0, min_divisor=1e-8),
        out[:4],
    )


def test_zca_whitened_covariance_is_identity_off_the_gcn_null_direction():
    images = smooth_images(6000)
    dim = 3 * 4 * 4
    gcn = global_contrast_normalize(
        images.reshape(len(images), -1).astype(np.float64),
        scale=55.0,
        sqrt_bias=0.0,
        min_divisor=1e-8,
    )
    raw_cov = np.cov(gcn, rowvar=False)
    # GCN removes each image's mean, so the all-ones direction has zero variance and ZCA
    # can only whiten the other D - 1 directions: the target is the projection onto them.
    target = np.eye(dim) - np.full((dim, dim), 1.0 / dim)
    assert np.abs(raw_cov - raw_cov.trace() / (dim - 1) * target).max() > 10  # far before

    pre = fit_preprocessing("gcn_zca", images)
    assert pre.matrix.shape == (dim, dim) and pre.matrix.dtype == np.float32
    np.testing.assert_allclose(pre.matrix, pre.matrix.T, atol=1e-5)
    out = pre.apply(images).reshape(len(images), -1).astype(np.float64)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(np.cov(out, rowvar=False, bias=True), target, atol=0.01)


def test_zca_eps_shrinks_small_directions():
    images = smooth_images(2000)
    weak = fit_preprocessing("gcn_zca", images, eps=1e3).apply(images).reshape(2000, -1)
    # A huge regulariser no longer whitens: variances stay well below 1.
    assert np.cov(weak, rowvar=False).diagonal().max() < 0.5


@pytest.mark.parametrize("kind", ["normalize", "gcn_zca", "none"])
def test_to_dict_from_dict_round_trip_through_json(kind):
    images = smooth_images(300)
    pre = fit_preprocessing(kind, images)
    data = json.loads(json.dumps(pre.to_dict()))
    assert data["kind"] == kind and data["shape"] == [3, 4, 4] and data["format"] == 1
    back = Preprocessing.from_dict(data)
    np.testing.assert_array_equal(back.apply(images), pre.apply(images))
    assert back.to_dict() == data


def test_dict_documents_what_a_consumer_applies():
    images = smooth_images(300)
    data = fit_preprocessing("gcn_zca", images, scale=10.0, eps=0.5).to_dict()
    # Recompute from the dict alone, as an ONNX caller would, following the docstring.
    v = images[:2].reshape(2, -1) * data["pixel_scale"]
    v = v - v.mean(axis=1, keepdims=True)
    v = v / (np.sqrt(data["gcn"]["sqrt_bias"] + (v**2).sum(axis=1)) / data["gcn"]["scale"])[:, None]
    y = (v - np.asarray(data["zca"]["mean"])) @ np.asarray(data["zca"]["matrix"])
    expected = Preprocessing.from_dict(data).apply(images[:2]).reshape(2, -1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert data["zca"]["eps"] == 0.5 and data["gcn"]["scale"] == 10.0

    norm = fit_preprocessing("normalize", images).to_dict()
    x = images[:1] * norm["pixel_scale"]
    y = (x - np.asarray(norm["mean"])[:, None, None]) / np.asarray(norm["std"])[:, None, None]
    np.testing.assert_allclose(y, Preprocessing.from_dict(norm).apply(images[:1]), atol=1e-5)


def test_errors_are_user_errors():
    images = smooth_images(10)
    with pytest.raises(UserError) as caught:
        fit_preprocessing("zca", images)
    assert str(caught.value) == (
        "unknown preprocessing 'zca': expected one of normalize, gcn_zca, none — did you mean 'gcn_zca'?"
    )
    with pytest.raises(UserError, match="^preprocessing normalize: unknown option 'eps': it takes none$"):
        fit_preprocessing("normalize", images, eps=1.0)
    data = fit_preprocessing("normalize", images).to_dict()
    del data["std"]
    with pytest.raises(UserError, match="^preprocessing dict: missing key 'std'$"):
        Preprocessing.from_dict(data)
    pre = fit_preprocessing("normalize", images)
    with pytest.raises(UserError, match="fitted on 3-channel images"):
        pre.apply(np.zeros((1, 1, 4, 4), np.uint8))
