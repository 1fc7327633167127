"""Specs hostile in structure end in one located line and exit 2 — never a traceback, an
"internal error", a hang or unbounded memory: deep nesting, control bytes, tags, non-finite
numbers, expansion bombs, special files given as a spec or as `base:`."""

from __future__ import annotations

import os
import time

import pytest

from specc.cli import main

HEAD = "name: t\ninput: {channels: 3, size: 8}\nclasses: 2\n"
TAIL = "  - {type: conv, filters: 2, kernel: 3}\n  - {type: global_avg_pool}\n"


def run_check(tmp_path, monkeypatch, capsys, data: bytes | str, *args: str) -> list[str]:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "spec.yaml"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    started = time.perf_counter()
    code = main(["check", "spec.yaml", *args])
    assert time.perf_counter() - started < 20  # refused from the counts, not after the work
    out = capsys.readouterr()
    assert code == 2, out
    assert "Traceback" not in out.err and "internal error" not in out.err
    return out.err.strip().splitlines()


CASES = {
    "nesting thousands deep": (
        "a: " + "[" * 5000 + "]" * 5000 + "\n",
        ["spec.yaml:1:67: YAML: nesting deeper than 64 levels exceeds the limit"],
    ),
    "NUL byte": (
        b"name: x\x00\ninput: 3\n",
        ["spec.yaml:1:8: YAML: control character U+0000 is not allowed — expected printable text"],
    ),
    "bell on line 3": (
        HEAD.encode() + b"layers: \x07\n",
        ["spec.yaml:4:9: YAML: control character U+0007 is not allowed — expected printable text"],
    ),
    "binary tag": (
        "name: !!binary aGVsbG8=\n" + HEAD[8:] + "layers:\n" + TAIL,
        ["spec.yaml:1:7: name: YAML: tag not allowed (plain YAML only): 'tag:yaml.org,2002:binary'"],
    ),
    "custom tag on a number": (
        HEAD + "layers:\n  - {type: conv, filters: !big 2, kernel: 3}\n  - {type: global_avg_pool}\n",
        ["spec.yaml:5:27: layers[0].filters: YAML: tag not allowed (plain YAML only): '!big'"],
    ),
    "nan rate": (
        HEAD + "layers:\n  - {type: dropout, rate: .nan}\n" + TAIL,
        ["spec.yaml:5:27: layers[0].rate: .nan is not a finite number — expected a number (quote it for text)"],
    ),
    "inf slope": (
        HEAD + "layers:\n  - {type: leaky_relu, slope: .inf}\n" + TAIL,
        ["spec.yaml:5:31: layers[0].slope: .inf is not a finite number — expected a number (quote it for text)"],
    ),
    "minus inf in defaults": (
        HEAD + "defaults:\n  batch_norm: {eps: -.Inf}\nlayers:\n" + TAIL,
        [
            "spec.yaml:5:21: defaults.batch_norm.eps: -.Inf is not a finite number — expected a number (quote it for text)"
        ],
    ),
    "nested repeat bomb": (
        HEAD + "layers:\n  - repeat: 1000\n    layers:\n      - repeat: 1000\n        layers:\n"
        "          - {type: relu}\n" + TAIL,
        ["spec.yaml:5:13: layers[0]: repeat: 1,000 x 1,000 layers = 1,000,000 exceeds the limit of 10,000 layers"],
    ),
    "three-level bomb of small counts": (
        HEAD + "layers:\n  - repeat: 30\n    layers:\n      - repeat: 30\n        layers:\n"
        "          - repeat: 30\n            layers: [{type: relu}]\n" + TAIL,
        ["spec.yaml:5:13: layers[0]: repeat: 30 x 900 layers = 27,000 exceeds the limit of 10,000 layers"],
    ),
    "adaptive pool output over the limit": (
        HEAD + "layers:\n  - {type: adaptive_avg_pool, output: 100000000}\n  - {type: global_avg_pool}\n",
        ["spec.yaml:5:5: layers[0] (aavgpool1): output 100000000x100000000 exceeds the limit of 16,384 a side"],
    ),
    "repeat count over the limit": (
        HEAD + "layers:\n  - repeat: 1000000000\n    layers: [{type: relu}]\n" + TAIL,
        ["spec.yaml:5:13: layers[0]: repeat: 1,000,000,000 exceeds the limit of 10,000"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_spec(case, tmp_path, monkeypatch, capsys):
    data, expected = CASES[case]
    assert run_check(tmp_path, monkeypatch, capsys, data) == expected


def test_timestamp_reads_as_text(tmp_path, monkeypatch, capsys):
    """An unquoted date is text (here a description), not a datetime object that fails later."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(HEAD + "description: 2024-01-01\nlayers:\n" + TAIL)
    assert main(["fmt", "spec.yaml"]) == 0
    assert "description: '2024-01-01'" in capsys.readouterr().out


@pytest.mark.parametrize("special", ["fifo", "directory", "/dev/zero"])
def test_special_files_as_spec_and_as_base(special, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if special == "fifo":
        os.mkfifo(tmp_path / "special")
        target, kind = "special", "is a special file (device, FIFO or socket)"
    elif special == "directory":
        (tmp_path / "special").mkdir()
        target, kind = "special", "is a directory"
    else:
        target, kind = "/dev/zero", "is a special file (device, FIFO or socket)"
    assert main(["check", target]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {target}: {kind}, expected a YAML spec file"
    (tmp_path / "child.yaml").write_text(f"base: {target}\nname: child\n")
    assert main(["check", "child.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"child.yaml:1:7: base: '{target}' {kind} — expected a spec file"


@pytest.mark.parametrize("command", [["import"], ["bench"], ["predict", "-", "x.png"]])
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_model_commands_refuse_special_files(command, special, tmp_path, monkeypatch, capsys):
    """A FIFO would block and /dev/zero never end: refused before reading, in one line."""
    monkeypatch.chdir(tmp_path)
    if special == "fifo":
        os.mkfifo(tmp_path / "model.onnx")
        special = "model.onnx"
    argv = [command[0], special, *command[2:]] if command[0] == "predict" else [command[0], special]
    started = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - started < 20
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {special}: ") and "\n" not in err
