"""CIFAR-10/100 readers on tiny files written in the real formats, and the pickle guard."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from specc.errors import UserError
from specc.training.data import load_dataset
from specc.training.data.safe_pickle import load_pickle

PER_BATCH = 6


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 `str` (BINSTRING), as the real CIFAR files do;
    Python 3's protocol 2 would wrap bytes in `_codecs.encode` calls instead."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def write_py2_pickle(path: Path, obj) -> None:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    # Python 2 numpy named the reconstructor's module numpy.core.multiarray.
    data = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"_codecs" not in data and b"numpy._core" not in data
    path.write_bytes(data)


def make_batch(seed: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
    labels = rng.integers(0, classes, size=PER_BATCH)
    return data, labels


def write_cifar10_py(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = make_batch(i, 10)
        record = {
            b"batch_label": b"training batch",
            b"labels": [int(v) for v in labels],
            b"data": data,
            b"filenames": [b"img%d.png" % k for k in range(PER_BATCH)],
        }
        write_py2_pickle(folder / name, record)
        batches[name] = (data, labels)
    meta = {b"label_names": [b"name%d" % k for k in range(10)], b"num_vis": 3072}
    write_py2_pickle(folder / "batches.meta", meta)
    return batches


def write_cifar10_bin(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        data, labels = make_batch(10 + i, 10)
        records = np.concatenate([labels[:, None].astype(np.uint8), data], axis=1)
        (folder / name).write_bytes(records.tobytes())
        batches[name] = (data, labels)
    (folder / "batches.meta.txt").write_text("".join(f"bin{k}\n" for k in range(10)) + "\n")
    return batches


def concat(batches, names):
    images = np.concatenate([batches[n][0] for n in names]).reshape(-1, 3, 32, 32)
    return images, np.concatenate([batches[n][1] for n in names])


TRAIN_PY = [f"data_batch_{k}" for k in range(1, 6)]


@pytest.mark.parametrize("point_at_folder", [False, True])
def test_cifar10_pickle_round_trip(tmp_path, point_at_folder):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar10_py(folder)
    data_dir = folder if point_at_folder else tmp_path
    train = load_dataset("cifar10", str(data_dir), "train")
    images, labels = concat(batches, TRAIN_PY)
    assert train.images.shape == (5 * PER_BATCH, 3, 32, 32)
    np.testing.assert_array_equal(train.images, images)
    np.testing.assert_array_equal(train.labels, labels)
    assert train.labels.dtype == np.int64 and train.classes == 10
    assert train.label_names == [f"name{k}" for k in range(10)]
    assert train.source == f"{folder}/{{{','.join(TRAIN_PY)}}}"
    test = load_dataset("cifar10", str(data_dir), "test", image_size=(32, 32))
    np.testing.assert_array_equal(test.images, concat(batches, ["test_batch"])[0])
    assert test.source == str(folder / "test_batch")


@pytest.mark.parametrize("point_at_folder", [False, True])
def test_cifar10_binary_round_trip(tmp_path, point_at_folder):
    folder = tmp_path / "cifar-10-batches-bin"
    batches = write_cifar10_bin(folder)
    train = load_dataset("cifar10", str(folder if point_at_folder else tmp_path), "train")
    images, labels = concat(batches, [f"data_batch_{k}.bin" for k in range(1, 6)])
    np.testing.assert_array_equal(train.images, images)
    np.testing.assert_array_equal(train.labels, labels)
    assert train.label_names == [f"bin{k}" for k in range(10)]


def test_cifar100_pickle_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data, fine = make_batch(1, 100)
    coarse = (fine // 5).tolist()
    record = {b"data": data, b"fine_labels": fine.tolist(), b"coarse_labels": coarse}
    write_py2_pickle(folder / "train", record)
    names = {b"fine_label_names": [b"f%d" % k for k in range(100)], b"coarse_label_names": []}
    write_py2_pickle(folder / "meta", names)
    ds = load_dataset("cifar100", str(tmp_path), "train")
    np.testing.assert_array_equal(ds.images, data.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(ds.labels, fine)
    assert ds.classes == 100 and ds.label_names[99] == "f99"


def test_cifar100_binary_reads_the_fine_byte(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    data, fine = make_batch(2, 100)
    coarse = (99 - fine) // 5  # differs from fine, so reading the wrong byte fails
    records = np.concatenate([coarse[:, None], fine[:, None], data], axis=1).astype(np.uint8)
    (folder / "test.bin").write_bytes(records.tobytes())
    (folder / "fine_label_names.txt").write_text("\n".join(f"n{k}" for k in range(100)))
    ds = load_dataset("cifar100", str(folder), "test")
    np.testing.assert_array_equal(ds.labels, fine)
    np.testing.assert_array_equal(ds.images, data.reshape(-1, 3, 32, 32))


class RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OpensFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("evil", [RunsShell, OpensFile])
def test_malicious_pickle_is_refused_without_running(tmp_path, evil):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_py(folder)
    marker = tmp_path / "pwned"
    batch = folder / "data_batch_2"
    write_py2_pickle(batch, {b"data": evil(marker), b"labels": []})
    function = os.system if evil is RunsShell else open
    refused = f"{function.__module__}.{function.__name__}"
    with pytest.raises(UserError) as caught:
        load_dataset("cifar10", str(tmp_path), "train")
    assert str(caught.value) == (
        f"{batch}: refused to unpickle global '{refused}': "
        "a dataset pickle may only contain numpy arrays and plain containers"
    )
    assert not marker.exists()


def test_safe_pickle_allows_containers_and_modern_numpy(tmp_path):
    path = tmp_path / "ok.pkl"
    value = {"set": {1, 2}, "array": np.arange(5, dtype=np.int16), "t": (1, b"x")}
    path.write_bytes(pickle.dumps(value, protocol=5))
    loaded = load_pickle(path)
    assert loaded["set"] == {1, 2} and loaded["t"] == (1, b"x")
    np.testing.assert_array_equal(loaded["array"], value["array"])


def test_missing_directory_names_the_expected_files(tmp_path):
    expected = (
        "expected cifar-10-batches-py/{data_batch_1..5,test_batch} or "
        "cifar-10-batches-bin/{data_batch_1..5.bin,test_batch.bin}"
    )
    with pytest.raises(UserError) as caught:
        load_dataset("cifar10", str(tmp_path / "nope"), "train")
    assert str(caught.value) == (f"cifar10: no CIFAR-10 found in {tmp_path / 'nope'} (no such directory): {expected}")
    with pytest.raises(UserError) as caught:
        load_dataset("cifar10", str(tmp_path), "test")
    assert str(caught.value) == f"cifar10: no CIFAR-10 found in {tmp_path}: {expected}"
    with pytest.raises(UserError, match="^cifar100: no data directory given: pass --data-dir"):
        load_dataset("cifar100", None, "train")


def test_incomplete_download_names_the_missing_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_py(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError) as caught:
        load_dataset("cifar10", str(tmp_path), "train")
    assert str(caught.value) == f"cifar10: incomplete CIFAR-10 in {folder}: missing data_batch_3"
    load_dataset("cifar10", str(tmp_path), "test")  # the test split is still complete


def test_truncated_files_give_one_line(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_py(folder)
    batch = folder / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-700])
    with pytest.raises(UserError, match=rf"^{batch}: truncated pickle \(\d+ bytes\)"):
        load_dataset("cifar10", str(folder), "test")

    binary = tmp_path / "bin" / "cifar-10-batches-bin"
    write_cifar10_bin(binary)
    path = binary / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError) as caught:
        load_dataset("cifar10", str(binary), "test")
    size = PER_BATCH * 3073 - 5
    assert str(caught.value) == (
        f"{path}: truncated or not CIFAR-10 binary: {size} bytes is not a whole number of 3073-byte records"
    )


def test_bad_labels_and_keys_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10_bin(folder)
    path = folder / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[0] = 12
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=rf"^{path}: label 12 out of range: expected 0..9$"):
        load_dataset("cifar10", str(folder), "test")

    py = tmp_path / "py" / "cifar-10-batches-py"
    write_cifar10_py(py)
    write_py2_pickle(py / "test_batch", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(UserError, match=r"test_batch: missing key 'labels'"):
        load_dataset("cifar10", str(py), "test")


def test_python3_protocol_2_pickles_load(tmp_path):
    """Python 3 writes bytes at protocols 0-2 as `_codecs.encode(text, 'latin1')` calls: that
    one global is allowed (latin1 only); a re-pickled CIFAR batch loads like the original."""
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar10_py(folder)
    data, labels = batches["data_batch_3"]
    batch = folder / "data_batch_3"
    batch.write_bytes(pickle.dumps({b"data": data, b"labels": labels.tolist(), b"batch_label": b"x"}, protocol=2))
    assert b"_codecs" in batch.read_bytes()
    train = load_dataset("cifar10", str(tmp_path), "train")
    np.testing.assert_array_equal(train.images[2 * PER_BATCH : 3 * PER_BATCH].reshape(PER_BATCH, -1), data)


def test_codecs_with_another_encoding_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    # _codecs.encode("x", "rot13") written by hand: the file picks the codec.
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(UserError) as caught:
        load_pickle(path)
    assert str(caught.value).startswith(f"{path}: not a readable pickle: UnpicklingError: _codecs.encode with 'rot13'")
