"""`--weights-map` files a user gets wrong: each refusal is one line naming the flag and the
file (with line:col where the YAML is at fault), exit 2, nothing written."""

from __future__ import annotations

import torch

from specc.cli import main

SPEC = """name: tiny
input: {channels: 3, size: 8}
classes: 2
layers:
  - {type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {type: global_avg_pool}
  - {type: flatten}
  - {type: linear, units: 2}
"""
HEADER = "format: specc-weights-map-v1\nkeys:\n"


def _setup(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    state = {
        "0.weight": torch.zeros(4, 3, 3, 3),
        "0.bias": torch.zeros(4),
        "4.weight": torch.zeros(2, 4),
        "4.bias": torch.zeros(2),
    }
    torch.save(state, tmp_path / "plain.pt")
    return spec


def _refused(tmp_path, map_path, capsys) -> str:
    spec = _setup(tmp_path)
    out = tmp_path / "build"
    argv = ["compile", str(spec), "-o", str(out), "--weights", str(tmp_path / "plain.pt")]
    assert main([*argv, "--weights-map", str(map_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_a_key_given_twice_is_named_with_its_line(tmp_path, capsys):
    path = tmp_path / "map.yaml"
    keys = "  conv1.weight: 0.weight\n  conv1.weight: 0.bias\n  fc1.weight: 4.weight\n  fc1.bias: 4.bias\n"
    path.write_text(HEADER + keys)
    line = _refused(tmp_path, path, capsys)
    assert line == f"error: --weights-map {path}:4:3: keys.conv1.weight: duplicate key 'conv1.weight'"


def test_a_directory_is_not_called_a_checkpoint(tmp_path, capsys):
    (tmp_path / "maps").mkdir()
    line = _refused(tmp_path, tmp_path / "maps", capsys)
    assert line == f"error: --weights-map {tmp_path / 'maps'}: is a directory, expected a YAML weights map"


def test_a_missing_map_names_the_flag(tmp_path, capsys):
    line = _refused(tmp_path, tmp_path / "nope.yaml", capsys)
    assert line == f"error: --weights-map {tmp_path / 'nope.yaml'}: no such file"


def test_bad_yaml_is_located(tmp_path, capsys):
    path = tmp_path / "map.yaml"
    path.write_text("a: [\n")
    line = _refused(tmp_path, path, capsys)
    assert line == f"error: --weights-map {path}:2:1: YAML: expected the node content, but found '<stream end>'"
