"""Image folders, synthetic data, dataset_info, split_validation, fingerprints, name checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from specc.errors import UserError
from specc.training.data import ArrayDataset, dataset_info, load_dataset, split_validation

ROOT = Path(__file__).resolve().parents[2]


def save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def pattern(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_folder_exact_pixels_labels_and_crop(tmp_path):
    cat0, cat1, dog0 = pattern(0, 4, 4), pattern(1, 4, 4), pattern(2, 4, 4)
    save_png(tmp_path / "train" / "dog" / "a.png", dog0)
    save_png(tmp_path / "train" / "cat" / "b.png", cat1)
    save_png(tmp_path / "train" / "cat" / "a.png", cat0)
    wide = pattern(3, 4, 8)  # (H, W) = (4, 8): no resize needed, centre crop keeps cols 2..5
    save_png(tmp_path / "val" / "dog" / "wide.png", wide)
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    Image.fromarray(gray, mode="L").save(tmp_path / "val" / "dog" / "gray.png")

    train = load_dataset("folder", str(tmp_path), "train", image_size=(4, 4))
    assert train.label_names == ["cat", "dog"] and train.classes == 2
    assert train.labels.tolist() == [0, 0, 1]  # sorted classes, sorted files
    expected = np.stack([cat0, cat1, dog0]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(train.images, expected)

    test = load_dataset("folder", str(tmp_path), "test", image_size=(4, 4))
    assert test.labels.tolist() == [1, 1]  # "dog" keeps its train index though val lacks "cat"
    np.testing.assert_array_equal(test.images[0], np.repeat(gray[None], 3, axis=0))
    np.testing.assert_array_equal(test.images[1], wide[:, 2:6].transpose(2, 0, 1))
    assert test.source == str(tmp_path / "val")


def test_folder_resizes_shorter_side_then_crops(tmp_path):
    # 32x16 (W x H) image, left half red, right half blue. Shorter side 16 -> 4 scales it to
    # 16x4; the centre crop takes resized columns 6..9, so its first column is pure red, its
    # last pure blue (a left-aligned crop would give four red columns).
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, :16, 0] = 255
    pixels[:, 16:, 2] = 255
    save_png(tmp_path / "test" / "only" / "x.png", pixels)
    (tmp_path / "test" / "only" / "notes.txt").write_text("ignored: not an image")
    ds = load_dataset("folder", str(tmp_path), "test", image_size=(4, 4))
    assert ds.images.shape == (1, 3, 4, 4)
    red, green, blue = ds.images[0].astype(int)
    assert (red[:, 0] == 255).all() and (blue[:, 0] == 0).all()
    assert (blue[:, 3] == 255).all() and (red[:, 3] == 0).all()
    assert (green == 0).all() and (red[:, 1] > blue[:, 1]).all() and (red[:, 2] < blue[:, 2]).all()


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="^folder: image_size is required"):
        load_dataset("folder", str(tmp_path), "train")
    with pytest.raises(UserError) as caught:
        load_dataset("folder", str(tmp_path), "test", image_size=(4, 4))
    assert str(caught.value) == (
        f"folder: no test split in {tmp_path}: expected val/<class>/<image> or test/<class>/<image>"
    )
    bad = tmp_path / "train" / "cat" / "broken.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(UserError, match=rf"^{bad}: cannot decode image: "):
        load_dataset("folder", str(tmp_path), "train", image_size=(4, 4))
    save_png(tmp_path / "val" / "horse" / "h.png", pattern(0, 4, 4))
    with pytest.raises(UserError, match=r"class 'horse' is not among the 1 classes of "):
        load_dataset("folder", str(tmp_path), "test", image_size=(4, 4))


def test_synthetic_is_deterministic_shaped_and_learnable():
    train = load_dataset("synthetic", None, "train", image_size=(8, 8), classes=4, channels=2)
    again = load_dataset("synthetic", None, "train", image_size=(8, 8), classes=4, channels=2)
    test = load_dataset("synthetic", None, "test", image_size=(8, 8), classes=4, channels=2)
    assert train.images.shape == (512, 2, 8, 8) and test.images.shape == (128, 2, 8, 8)
    assert train.fingerprint() == again.fingerprint() != test.fingerprint()
    assert np.bincount(train.labels).tolist() == [128] * 4
    # Nearest class mean, fitted on train, must classify the test split well: the classes
    # share their patterns across splits and differ from each other.
    x_train = train.images.reshape(len(train), -1).astype(np.float64)
    means = np.stack([x_train[train.labels == c].mean(0) for c in range(4)])
    x_test = test.images.reshape(len(test), -1).astype(np.float64)
    predicted = np.argmin(((x_test[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test.labels).mean() > 0.9
    small = load_dataset("synthetic", None, "test", image_size=(3, 5), size=7)
    assert small.images.shape == (7, 3, 3, 5) and small.classes == 10


def test_synthetic_option_errors():
    with pytest.raises(UserError, match="^synthetic: image_size is required"):
        load_dataset("synthetic", None, "train")
    with pytest.raises(UserError) as caught:
        load_dataset("synthetic", None, "train", image_size=(4, 4), clases=3)
    assert str(caught.value) == (
        "synthetic: unknown dataset option 'clases': expected channels, classes, size — did you mean 'classes'?"
    )
    with pytest.raises(UserError, match="option 'size' must be a positive integer, got 0"):
        load_dataset("synthetic", None, "train", image_size=(4, 4), size=0)
    with pytest.raises(UserError, match="^cifar10: unknown dataset option 'size': it takes none$"):
        load_dataset("cifar10", None, "train", size=3)


def test_name_split_and_size_errors():
    with pytest.raises(UserError) as caught:
        load_dataset("cifar-10", None, "train")
    assert str(caught.value) == (
        "unknown dataset 'cifar-10': expected one of cifar10, cifar100, fashion-mnist, mnist, "
        "folder, npy, synthetic — did you mean 'cifar10'?"
    )
    with pytest.raises(UserError, match="^mnist: unknown split 'val': expected 'train' or 'test'$"):
        load_dataset("mnist", None, "val")
    with pytest.raises(UserError, match="must be two positive integers"):
        load_dataset("synthetic", None, "train", image_size=(4, 0))


def test_dataset_info(tmp_path):
    assert dataset_info("cifar100") == (3, 100, (32, 32))
    assert dataset_info("fashion-mnist") == (1, 10, (28, 28))
    assert dataset_info("synthetic", classes=7, channels=1) == (1, 7, None)
    with pytest.raises(UserError, match="option 'classes' must be a positive integer, got 0"):
        dataset_info("synthetic", classes=0)
    for name in ("a", "b", "c"):
        (tmp_path / "train" / name).mkdir(parents=True)
    assert dataset_info("folder", str(tmp_path)) == (3, 3, None)
    with pytest.raises(UserError, match="^folder: no data directory given"):
        dataset_info("folder")


def make_dataset(labels: list[int]) -> ArrayDataset:
    count = len(labels)
    images = np.arange(count, dtype=np.uint8).reshape(count, 1, 1, 1)  # image i holds i
    classes = max(labels) + 1
    return ArrayDataset(images, np.asarray(labels, np.int64), classes, [str(c) for c in range(classes)], "t", "mem")


def test_split_validation_is_stratified_disjoint_and_deterministic():
    ds = make_dataset([0] * 60 + [1] * 30 + [2] * 10)
    train, val = split_validation(ds, 0.2, seed=3)
    assert len(val) == 20 and len(train) == 80
    assert np.bincount(val.labels).tolist() == [12, 6, 2]
    ids_train, ids_val = train.images.ravel(), val.images.ravel()
    assert not set(ids_train) & set(ids_val)
    assert sorted([*ids_train, *ids_val]) == list(range(100))
    np.testing.assert_array_equal(ds.labels[ids_val], val.labels)  # labels follow images
    again = split_validation(ds, 0.2, seed=3)[1]
    other = split_validation(ds, 0.2, seed=4)[1]
    assert again.fingerprint() == val.fingerprint() != other.fingerprint()
    assert "split_validation fraction=0.2 seed=3: val" in val.source


def test_split_validation_exact_total_and_errors():
    ds = make_dataset([0, 0, 0, 1, 1, 1, 2])
    _, val = split_validation(ds, 0.5, seed=0)
    assert len(val) == 4  # round(3.5); largest remainders decide who gives the extra one
    with pytest.raises(UserError, match="must be between 0 and 1"):
        split_validation(ds, 1.0, seed=0)
    with pytest.raises(UserError, match="leaves an empty split"):
        split_validation(ds, 0.01, seed=0)


def test_fingerprint_sees_every_byte_and_shape():
    ds = make_dataset([0, 1, 1, 1])
    print_ = ds.fingerprint()
    assert len(print_) == 16 and int(print_, 16) >= 0
    images = ds.images.copy()
    images[3, 0, 0, 0] += 1
    changed = ArrayDataset(images, ds.labels, 2, ds.label_names, "t", "mem")
    renamed = ArrayDataset(ds.images.copy(), ds.labels, 2, ["x", "y"], "u", "v")
    relabelled = ArrayDataset(ds.images, ds.labels[::-1].copy(), 2, ds.label_names, "t", "mem")
    assert renamed.fingerprint() == print_  # names and sources do not matter, data does
    assert len({print_, changed.fingerprint(), relabelled.fingerprint()}) == 3
    wide = ArrayDataset(ds.images.reshape(1, 1, 1, 4).copy(), ds.labels[:1], 2, ["0", "1"], "t", "m")
    short = ArrayDataset(ds.images[:1], ds.labels[:1], 2, ["0", "1"], "t", "m")
    assert wide.fingerprint() != short.fingerprint()


def test_importing_the_readers_does_not_import_torch():
    code = (
        "import sys, specc.training.data as d; d.load_dataset('synthetic', None, 'test', "
        "image_size=(4, 4)); print('torch' in sys.modules, 'PIL' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.split() == ["False", "False"]
