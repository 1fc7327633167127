"""MNIST / Fashion-MNIST IDX readers on tiny files, plus the real Debian files if installed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from specc.errors import UserError
from specc.training.data import idx, load_dataset
from specc.training.data.idx import FASHION_DEFAULT_DIRS, FASHION_LABELS, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_split(folder: Path, prefix: str, count: int, seed: int, gz: bool):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count).astype(np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    train_images, train_labels = write_split(tmp_path, "train", 7, 0, gz)
    test_images, test_labels = write_split(tmp_path, "t10k", 3, 1, gz)
    train = load_dataset("mnist", str(tmp_path), "train")
    assert train.images.shape == (7, 1, 28, 28) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images[:, 0], train_images)
    np.testing.assert_array_equal(train.labels, train_labels)
    assert train.labels.dtype == np.int64
    assert train.label_names == [str(d) for d in range(10)]
    suffix = ".gz" if gz else ""
    assert train.source.endswith(f"train-labels-idx1-ubyte{suffix}")
    test = load_dataset("fashion-mnist", str(tmp_path), "test", image_size=(28, 28))
    np.testing.assert_array_equal(test.images[:, 0], test_images)
    np.testing.assert_array_equal(test.labels, test_labels)
    assert test.label_names == FASHION_LABELS and test.label_names[9] == "Ankle boot"


def test_torchvision_layout_is_found(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images, _ = write_split(raw, "t10k", 2, 3, gz=True)
    ds = load_dataset("fashion-mnist", str(tmp_path), "test")
    np.testing.assert_array_equal(ds.images[:, 0], images)


def test_truncated_idx_names_the_file(tmp_path):
    path = write_idx(tmp_path / "x-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError) as caught:
        read_idx(path, ndim=3)
    assert str(caught.value) == (f"{path}: truncated IDX data: header says 4x28x28 = 3136 bytes, file has 3126")
    path.write_bytes(path.read_bytes()[:6])
    with pytest.raises(UserError, match=rf"^{path}: truncated IDX header \(6 bytes\): expected 16$"):
        read_idx(path, ndim=3)


def test_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "x-labels-idx1-ubyte", np.arange(500) % 10, gz=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(UserError, match=rf"^{path}: truncated or corrupt gzip: "):
        read_idx(path, ndim=1)


def test_bad_magic_names_the_file(tmp_path):
    labels = write_idx(tmp_path / "labels", np.zeros(3, np.uint8), gz=False)
    with pytest.raises(UserError) as caught:
        read_idx(labels, ndim=3)  # a labels file where images were expected
    assert str(caught.value) == (
        f"{labels}: bad IDX magic 0x00000801: expected 0x00000803 (unsigned bytes, 3 dimensions)"
    )


def test_label_count_mismatch_and_range(tmp_path):
    write_split(tmp_path, "train", 4, 0, gz=False)
    labels_path = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8), gz=False)
    with pytest.raises(UserError, match=rf"^{labels_path}: 3 labels for 4 images in "):
        load_dataset("mnist", str(tmp_path), "train")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 10, 2]), gz=False)
    with pytest.raises(UserError, match=r"label 10 out of range: expected 0..9$"):
        load_dataset("mnist", str(tmp_path), "train")


def test_missing_files(tmp_path):
    with pytest.raises(UserError) as caught:
        load_dataset("mnist", None, "train")
    assert str(caught.value) == (
        "mnist: no data directory given: pass --data-dir holding "
        "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]"
    )
    with pytest.raises(UserError) as caught:
        load_dataset("mnist", str(tmp_path), "test")
    assert str(caught.value) == (
        f"mnist: no MNIST test split found in {tmp_path}: "
        "expected t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]"
    )
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8), gz=True)
    with pytest.raises(UserError) as caught:
        load_dataset("mnist", str(tmp_path), "test")
    assert str(caught.value) == (f"mnist: incomplete MNIST in {tmp_path}: missing t10k-labels-idx1-ubyte[.gz]")


def test_wrong_image_size_is_refused(tmp_path):
    with pytest.raises(UserError) as caught:
        load_dataset("fashion-mnist", str(tmp_path), "train", image_size=(32, 32))
    assert str(caught.value) == (
        "fashion-mnist: images are 28x28 but 32x32 was requested: change the spec's input size"
    )


@pytest.mark.skipif(
    not (Path(FASHION_DEFAULT_DIRS[0]) / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_default_location():
    train = load_dataset("fashion-mnist", None, "train")
    test = load_dataset("fashion-mnist", None, "test")
    assert train.images.shape == (60000, 1, 28, 28)
    assert test.images.shape == (10000, 1, 28, 28)
    for ds in (train, test):
        assert ds.labels.min() == 0 and ds.labels.max() == 9
        # Fashion-MNIST is balanced: every class has exactly a tenth of the split.
        assert set(np.bincount(ds.labels).tolist()) == {len(ds) // 10}
        assert ds.source.startswith(FASHION_DEFAULT_DIRS[0])
    assert train.labels[:3].tolist() == [9, 0, 0]  # first labels of the official file


def test_fashion_default_location_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "FASHION_DEFAULT_DIRS", (str(tmp_path / "a"), str(tmp_path / "b")))
    with pytest.raises(UserError) as caught:
        load_dataset("fashion-mnist", None, "train")
    assert str(caught.value) == (
        f"fashion-mnist: no Fashion-MNIST train split found in {tmp_path / 'a'}, {tmp_path / 'b'}: "
        "expected train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] "
        "(install Debian's dataset-fashion-mnist or pass --data-dir)"
    )


def raw_idx(path: Path, dims: tuple[int, ...], payload: bytes = b"", gz: bool = False) -> Path:
    data = bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_damaged_headers_are_one_line_naming_the_file(tmp_path, gz):
    path = tmp_path / ("x-images-idx3-ubyte" + (".gz" if gz else ""))
    cases = [
        # Each dimension near 2**32: the product overflows int64; exact, it is absurd.
        ((2**32 - 1, 2**32 - 1, 2**32 - 1), "the IDX header says 4294967295x4294967295x4294967295 = "),
        # A plausible header on a small file: refused before anything is unpacked.
        ((60000, 28, 28), "truncated IDX data: header says 60000x28x28 = 47040000 bytes, file has 100"),
        ((0, 28, 28), "the IDX header says 0x28x28: no data in it"),
    ]
    for dims, message in cases:
        raw_idx(path, dims, bytes(100), gz)
        with pytest.raises(UserError) as caught:
            read_idx(path, ndim=3)
        assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)


def test_empty_and_oversized_files(tmp_path):
    empty = tmp_path / "x-labels-idx1-ubyte"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=rf"^{empty}: empty file: expected an IDX file \(re-download it\)$"):
        read_idx(empty, ndim=1)
    long = raw_idx(tmp_path / "y-labels-idx1-ubyte", (3,), bytes(5))
    with pytest.raises(UserError, match=rf"^{long}: trailing bytes in IDX data: header says 3 = 3 bytes, file has 5$"):
        read_idx(long, ndim=1)
    # A gzip file that inflates far beyond its header is only unpacked one byte past it.
    bomb = raw_idx(tmp_path / "z-labels-idx1-ubyte.gz", (3,), bytes(50_000_000), gz=True)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(
        UserError, match=rf"^{bomb}: trailing bytes in IDX data: header says 3 = 3 bytes, file has more than 3$"
    ):
        read_idx(bomb, ndim=1)


def test_images_of_another_size_are_refused(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 14, 14), np.uint8), gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8), gz=False)
    with pytest.raises(UserError) as caught:
        load_dataset("mnist", str(tmp_path), "test")
    assert str(caught.value) == f"{tmp_path}/t10k-images-idx3-ubyte: the images are 14x14: MNIST images are 28x28"
