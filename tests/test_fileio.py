"""The one atomic writer (`specc.fileio`) and the one checkpoint reader (`specc.checkpoint_io`):
durability, permissions, cleanup on failure, and a one-line refusal for every bad file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import warnings

import pytest
import torch

from specc.checkpoint_io import CHECKPOINT_FORMAT, read_checkpoint, read_state_dict, save_checkpoint
from specc.errors import UserError
from specc.fileio import atomic_write, write_bytes, write_files, write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_usual_mode_and_a_replaced_file_keeps_its_own(tmp_path):
    umask = os.umask(0o027)
    try:
        assert write_text(tmp_path / "new.txt", "héllo") == len("héllo".encode())
        assert _mode(tmp_path / "new.txt") == 0o640  # 0o666 less the umask, not mkstemp's 0o600
    finally:
        os.umask(umask)
    old = tmp_path / "old.txt"
    old.write_text("x")
    old.chmod(0o600)
    write_text(old, "y")
    assert old.read_text() == "y" and _mode(old) == 0o600


def test_parents_are_created_and_no_temporary_is_left(tmp_path):
    path = tmp_path / "a" / "b" / "c.bin"
    assert write_bytes(path, b"123") == 3
    assert path.read_bytes() == b"123"
    assert os.listdir(path.parent) == ["c.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    write_text(path, "old")

    def half(f):
        f.write(b"new, half written")
        raise KeyboardInterrupt  # Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["keep.txt"]


def test_concurrent_writers_never_share_a_temporary(tmp_path):
    path = tmp_path / "shared.txt"
    errors = []

    def write(i):
        try:
            for _ in range(20):
                write_text(path, str(i) * 1000)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = path.read_text()
    assert len(set(text)) == 1 and len(text) == 1000  # one writer's whole content
    assert os.listdir(tmp_path) == ["shared.txt"]


def test_write_files_is_all_or_nothing_while_writing(tmp_path):
    a, b = tmp_path / "m.onnx", tmp_path / "m.py"
    write_files({a: b"old a", b: b"old b"})

    def broken(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match="m.py: cannot write it \\(No space left on device\\)"):
        write_files({a: b"new a", b: broken})
    assert a.read_bytes() == b"old a" and b.read_bytes() == b"old b"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.py"]
    assert write_files({a: b"new a", b: b"new b!"}) == {a: 5, b: 6}


# -- checkpoints ---------------------------------------------------------------------------
class _Object:
    pass


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _refusal(path) -> str:
    with pytest.raises(UserError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message[len(f"{path}: ") :]


OBJECTS = "holds Python objects other than tensors and plain data — refused (loading it would run arbitrary code)"
CORRUPT = "not a readable PyTorch checkpoint (truncated or corrupt?)"


def test_pickled_python_objects_are_refused_not_called_corrupt(tmp_path):
    # torch 2.13 words these two differently ("Unsupported global: GLOBAL ..." for a class,
    # "Trying to load unsupported GLOBAL posix.system whose module posix is blocked" for a
    # function); both are objects, neither is damage.
    for name, payload in {"class": {"x": _Object()}, "reduce": {"model": {"w": _RunsCode()}}}.items():
        torch.save(payload, tmp_path / f"{name}.pt")
        assert _refusal(tmp_path / f"{name}.pt") == OBJECTS


def test_damaged_and_foreign_files_are_one_line_errors(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"format": CHECKPOINT_FORMAT, "model": {"w": torch.ones(64, 64)}})
    cases = {
        "truncated.pt": good.read_bytes()[:200],
        "half.pt": good.read_bytes()[: good.stat().st_size // 2],  # torch raises OSError(EINVAL) here
        "garbage.pt": b"not a checkpoint at all\n" * 10,
        "empty.pt": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert _refusal(tmp_path / name) == CORRUPT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script itself is deprecated
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "scripted.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "looks like a TorchScript archive" must not leak
        assert _refusal(tmp_path / "scripted.pt") == "a TorchScript archive, not a checkpoint of tensors"


def test_missing_folders_and_special_files_are_refused_before_reading(tmp_path):
    assert _refusal(tmp_path / "absent.pt") == "no such file"
    assert _refusal(tmp_path) == "is a directory, not a checkpoint file"
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)  # reading would block forever
    assert _refusal(fifo) == "not a regular file, not a checkpoint file"


def test_read_state_dict_unwraps_and_checks_the_format(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": {"module.conv.weight": torch.ones(1)}, "epoch": 2})
    container, state = read_state_dict(path)
    assert container is not None and container["epoch"] == 2 and list(state) == ["conv.weight"]
    torch.save({"_orig_mod.fc.bias": torch.zeros(2)}, path)
    container, state = read_state_dict(path)
    assert container is None and list(state) == ["fc.bias"]
    torch.save({"format": "other-v2", "model": {}}, path)
    with pytest.raises(UserError, match=r"checkpoint format 'other-v2' — expected 'specc-checkpoint-v1'$"):
        read_state_dict(path)
    torch.save({"epoch": 3}, path)
    with pytest.raises(UserError, match="neither a state_dict nor a specc checkpoint"):
        read_state_dict(path)


def test_the_core_modules_import_without_torch():
    code = (
        "import sys; import specc.fileio, specc.checkpoint_io, specc.preprocessing, specc.train_schema; "
        "print([m for m in ('torch', 'numpy', 'onnx') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
