"""Where a result cannot be written — a file where a folder should be, a folder where the
file should be, a full disk, a rename that fails half-way through a set — the user gets one
line naming the path, and nothing they own is lost or half-written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import specc.fileio
from specc.cli import main
from specc.errors import UserError
from specc.fileio import write_files, write_text

SPEC = str(Path(__file__).resolve().parents[1] / "specs" / "allcnn_c.yaml")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_full_disk_is_one_line_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")

    def full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UserError) as exc:
        specc.fileio.atomic_write(target, full)
    assert str(exc.value) == f"{target}: cannot write it (No space left on device)"
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_a_file_in_place_of_a_folder(tmp_path):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(UserError) as exc:
        write_text(tmp_path / "afile" / "out.txt", "x")
    assert (
        str(exc.value)
        == f"{tmp_path / 'afile' / 'out.txt'}: cannot write it — a file is in the way where a folder should be"
    )
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_folder_in_place_of_the_file(tmp_path):
    (tmp_path / "out.txt").mkdir()
    with pytest.raises(UserError) as exc:
        write_text(tmp_path / "out.txt", "x")
    assert str(exc.value) == f"{tmp_path / 'out.txt'}: is a folder — expected a file name to write"


def test_a_rename_failing_half_way_puts_the_first_file_back(tmp_path, monkeypatch):
    first, second = tmp_path / "a.onnx", tmp_path / "a.py"
    first.write_text("old model")
    second.write_text("old code")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if str(dst) == str(second) and str(src).endswith(".tmp"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(specc.fileio.os, "replace", flaky)
    with pytest.raises(UserError) as exc:
        write_files({first: b"new model", second: b"new code"})
    assert str(exc.value) == f"{second}: cannot write it (Input/output error)"
    assert first.read_text() == "old model" and second.read_text() == "old code"
    assert leftovers(tmp_path) == []


def test_a_rename_failing_half_way_removes_a_first_file_that_was_new(tmp_path, monkeypatch):
    first, second = tmp_path / "b.onnx", tmp_path / "b.py"
    real_replace = os.replace

    def flaky(src, dst):
        if str(dst) == str(second):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(specc.fileio.os, "replace", flaky)
    with pytest.raises(UserError):
        write_files({first: b"model", second: b"code"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["file as -o parent", "folder in the way", "folder in the way --force"])
def test_compile_output_paths(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if case == "file as -o parent":
        Path("afile").write_text("mine")
        argv, expected = (
            ["-o", "afile/x"],
            "error: afile/x/allcnn_c.onnx: cannot write it — a file is in the way where a folder should be",
        )
    else:
        Path("out/allcnn_c.onnx").mkdir(parents=True)
        argv = ["-o", "out"] + (["--force"] if case.endswith("--force") else [])
        expected = "error: out/allcnn_c.onnx: a folder is in the way of the file to write — remove or rename it"
    assert main(["compile", SPEC, *argv]) == 2
    out = capsys.readouterr()
    assert out.err.strip().splitlines()[-1] == expected
    assert "wrote:" not in out.out
    assert not Path("out/allcnn_c.py").exists() and not Path("afile/x").exists()
    if case == "file as -o parent":
        assert Path("afile").read_text() == "mine"
