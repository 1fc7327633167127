"""`specc import` as a command: the spec and the checkpoint written together, never over an
existing file without --force, nothing written for a refused model, `--torch` on a user's
module and its one-line errors."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from import_helpers import comparable, image_input, save_onnx
from onnx import helper

import specc
from specc.checkpoint_io import CHECKPOINT_FORMAT, read_state_dict
from specc.cli import main
from specc.ir import Graph
from specc_onnx import emit, random_weights, to_bytes

ROOT = Path(__file__).resolve().parents[1]


# -- the command ----------------------------------------------------------------------------
@pytest.fixture
def resnet_onnx(tmp_path) -> tuple[Path, Graph, dict]:
    graph = specc.load(str(ROOT / "specs" / "resnet_tiny.yaml"))
    weights = random_weights(graph)
    path = tmp_path / "resnet_tiny.onnx"
    path.write_bytes(to_bytes(emit(graph, weights, fold_bn=False, output="probs")))
    return path, graph, weights


def test_cli_writes_the_spec_and_the_checkpoint(resnet_onnx, tmp_path, capsys):
    path, graph, weights = resnet_onnx
    spec, ckpt = tmp_path / "out" / "net.yaml", tmp_path / "out" / "net.pt"
    assert main(["import", str(path), "-o", str(spec), "--weights-out", str(ckpt), "--name", "net"]) == 0
    out = capsys.readouterr().out
    assert "net: input 3x32x32 -> 10, 10 classes; 22 layers" in out and str(spec) in out and str(ckpt) in out
    text = spec.read_text()
    assert text.startswith(f"# imported by specc {specc.__version__} from {path}\n")
    imported = specc.load(str(spec))
    assert comparable(imported)[2:] == comparable(graph)[2:] and imported.name == "net"
    container, state = read_state_dict(ckpt)
    assert container is not None and container["format"] == CHECKPOINT_FORMAT
    assert container["spec"] == specc.fmt(imported)
    for key, array in weights.items():
        np.testing.assert_array_equal(state[key].numpy(), array)
    assert sorted(p.name for p in spec.parent.iterdir()) == ["net.pt", "net.yaml"]  # no temporary files left


def test_cli_refuses_to_overwrite_without_force(resnet_onnx, tmp_path, capsys, monkeypatch):
    path, _, _ = resnet_onnx
    monkeypatch.chdir(tmp_path)
    assert main(["import", str(path)]) == 0  # resnet_tiny.yaml and resnet_tiny.pt, named after the graph
    before = {p: p.read_bytes() for p in (tmp_path / "resnet_tiny.yaml", tmp_path / "resnet_tiny.pt")}
    capsys.readouterr()
    assert main(["import", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == "error: resnet_tiny.yaml, resnet_tiny.pt already exist — pass --force to overwrite\n"
    assert {p: p.read_bytes() for p in before} == before
    assert main(["import", str(path), "--force"]) == 0


def test_cli_refusal_writes_nothing(tmp_path, capsys):
    path = save_onnx(
        tmp_path,
        [helper.make_node("Einsum", ["x", "x"], ["y"], name="mix", equation="nchw,nchw->nchw")],
        [image_input()],
        [image_input("y")],
    )
    assert main(["import", str(path), "-o", str(tmp_path / "m.yaml")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {path}: node mix (Einsum) at #1 of 1, after the input: specc has no layer for this op\n"
    )
    assert not (tmp_path / "m.yaml").exists() and not (tmp_path / "m.pt").exists()


USER_MODULE = """
import torch
from torch import nn

def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
"""


def test_cli_torch_imports_a_users_module(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(USER_MODULE)
    spec = tmp_path / "small.yaml"
    ref = f"{tmp_path / 'nets.py'}:make_model"
    assert main(["import", "--torch", ref, "--input", "1x6x6", "-o", str(spec)]) == 0
    graph = specc.load(str(spec))
    assert [n.type for n in graph.nodes] == ["conv", "global_avg_pool", "linear"]
    assert graph.input_shape == (1, 6, 6) and graph.classes == 3 and graph.name == "Sequential"
    assert (tmp_path / "small.pt").exists()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise RuntimeError('no GPU here')\n", "importing {file} fails: RuntimeError: no GPU here"),
        ("def make_model():\n    return 3\n", "make_model() returns int, expected a torch.nn.Module"),
        ("x = 1\n", "{file} has no 'make_model'"),
    ],
)
def test_cli_torch_errors_in_the_users_module_are_one_line(tmp_path, capsys, source, message):
    file = tmp_path / "broken.py"
    file.write_text(source)
    assert main(["import", "--torch", f"{file}:make_model", "-o", str(tmp_path / "b.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --torch {file}:make_model: {message.format(file=file)}\n"
    assert not (tmp_path / "b.yaml").exists()


def test_the_command_is_registered():
    assert importlib.import_module("specc.commands.import").register is not None
    with pytest.raises(SystemExit) as info:
        main(["import", "--help"])
    assert info.value.code == 0


CHAIN_MODULE = """
import torch
from torch import nn

def make_model():
    torch.manual_seed(0)
    convs = [m for _ in range(4) for m in (nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU())]
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), *convs, nn.Flatten(), nn.Linear(8 * 6 * 6, 3))
"""


def test_cli_factors_defaults_and_repeats_that_load_back_the_same(tmp_path, capsys):
    """Five conv layers that differ only in their input width, named 0, 2, ..., 8 by
    nn.Sequential: the values they share in `defaults`, then one `repeat` block over the
    numbers in their names; the file loads back to the same layers."""
    (tmp_path / "chain.py").write_text(CHAIN_MODULE)
    spec = tmp_path / "chain.yaml"
    assert main(["import", "--torch", f"{tmp_path / 'chain.py'}:make_model", "--input", "3x6x6", "-o", str(spec)]) == 0
    text = spec.read_text()
    assert "defaults:\n  conv: {kernel: 3, padding: same, filters: 8, bias: false, activation: relu}\n" in text
    assert (
        "  - repeat: 5\n    vars:\n      v1: [0, 2, 4, 6, 8]\n    layers:\n      - {name: 'conv_${v1}', type: conv}\n"
        in text
    )
    loaded = specc.load(str(spec))
    assert [n.name for n in loaded.nodes] == ["conv_0", "conv_2", "conv_4", "conv_6", "conv_8", "flatten_10", "fc_11"]
    assert all(n.op.kernel == 3 and n.op.activation == "relu" for n in loaded.nodes[:5])  # type: ignore[attr-defined]


ARGS_MODULE = """
import torch
from torch import nn

def make_model(classes=3, width=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, width, 3), nn.Flatten(), nn.Linear(width * 4 * 4, classes))
"""


def test_cli_torch_args_reach_the_callable_and_are_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(ARGS_MODULE)
    ref = f"{tmp_path / 'nets.py'}:make_model"
    spec = tmp_path / "n.yaml"
    argv = ["import", "--torch", ref, "--input", "1x6x6", "-o", str(spec), "--arg", "classes=7", "--arg", "width=2"]
    assert main(argv) == 0
    graph = specc.load(str(spec))
    assert graph.classes == 7 and graph.nodes[0].op.filters == 2  # type: ignore[attr-defined]
    capsys.readouterr()
    assert main(["import", "--torch", ref, "-o", str(tmp_path / "m.yaml"), "--arg", "depth=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --torch {ref}: calling make_model(depth=3) fails: TypeError: ")
    assert main(["import", "--torch", ref, "-o", str(tmp_path / "m.yaml"), "--arg", "classes"]) == 2
    assert capsys.readouterr().err == (
        "error: --arg classes: expected KEY=VALUE with a Python name as KEY, e.g. --arg num_classes=10\n"
    )
    assert not (tmp_path / "m.yaml").exists()


def test_import_json_reports_what_was_written(tmp_path, capsys):
    import json

    from specc.cli import main
    from tests.conftest import ROOT

    spec = str(ROOT / "specs" / "resnet_tiny.yaml")
    assert main(["compile", spec, "--target", "onnx", "--no-fold", "-o", str(tmp_path), "--force"]) == 0
    capsys.readouterr()
    out = tmp_path / "imported.yaml"
    assert main(["import", str(tmp_path / "resnet_tiny.onnx"), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    import specc

    source = specc.build(spec)  # torch.nn counts the source's parameters
    assert report["parameters"] == sum(p.numel() for p in source.parameters())
    assert report["files"] == {
        str(out): out.stat().st_size,
        str(out.with_suffix(".pt")): out.with_suffix(".pt").stat().st_size,
    }
    assert report["input"] == [3, 32, 32] and report["classes"] == 10
