"""`-o -` means stdout to specc: a command that writes files refuses it in one line instead
of creating a file or folder literally named `-`; transform prints the spec as without -o."""

from __future__ import annotations

from pathlib import Path

import pytest

from specc.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "model_a.yaml"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["compile", str(SPEC), "-o", "-"],
            "-o -: compile's files (ONNX model, PyTorch code) cannot go to stdout — name a folder",
        ),
        (["import", "m.onnx", "-o", "-"], "-o -: a spec and its checkpoint cannot go to stdout — name a file"),
        (
            ["import", "m.onnx", "-o", "m.yaml", "--weights-out", "-"],
            "--weights-out -: a checkpoint cannot go to stdout — name a file",
        ),
        (["quantize", "m.onnx", "--data", "npy", "-o", "-"], "-o -: an ONNX model cannot go to stdout — name a file"),
        (["train", str(SPEC), "--out", "-"], "--out -: a run directory cannot go to stdout — name a folder"),
        (
            ["predict", "m.onnx", "x.png", "--out", "-"],
            "--out -: the maps (.npy and .png) cannot go to stdout — name a folder",
        ),
        (
            ["ablate", str(SPEC), "--out", "-"],
            "--out -: the ablation's runs and report cannot go to stdout — name a folder",
        ),
    ],
)
def test_files_to_stdout_are_refused(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == f"error: {message}"
    assert list(tmp_path.iterdir()) == []


def test_transform_to_stdout_prints_the_spec(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["transform", str(SPEC), "--classes", "5", "-o", "-"]) == 0
    out = capsys.readouterr().out
    assert "\nname: model_a\n" in out and "\nclasses: 5\n" in out
    assert list(tmp_path.iterdir()) == []
