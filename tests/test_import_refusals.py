"""`specc import` refuses what it cannot import exactly: each bad input is one line (one per
offending node) naming what is wrong, exit 2, and nothing written; `--allow-partial` writes
the spec up to the last layer before the first offending node and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from import_helpers import image_input, save_onnx
from onnx import TensorProto, helper

import specc
from specc.cli import main
from specc_onnx import emit, random_weights, to_bytes

ROOT = Path(__file__).resolve().parents[1]


def _refused(argv: list[str], out: Path, capsys) -> str:
    assert main(["import", *argv, "-o", str(out)]) == 2
    assert not out.exists() and not out.with_suffix(".pt").exists()
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def _conv_then(tmp_path: Path, tail: list, outputs: list, name="m.onnx") -> Path:
    """x (1x3x4x4) -> conv c (4 filters, 1x1) -> `tail`."""
    weight = onnx.numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="c", kernel_shape=[1, 1])
    return save_onnx(tmp_path, [conv, *tail], [image_input()], outputs, [weight], name=name)


def test_a_truncated_file(tmp_path, capsys):
    graph = specc.load(str(ROOT / "specs" / "resnet_tiny.yaml"))
    data = to_bytes(emit(graph, random_weights(graph)))
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    err = _refused([str(path)], tmp_path / "cut.yaml", capsys)
    assert err == f"error: {path}: not an ONNX model (DecodeError)\n"


def test_unsupported_ops_each_on_a_line_and_nothing_written(tmp_path, capsys):
    """An LSTM behind an Unsqueeze specc cannot read, an Einsum beside them: every node is
    named with where it sits and why."""
    axes = onnx.numpy_helper.from_array(np.array([0], np.int64), "axes")
    nodes = [
        helper.make_node("Flatten", ["c"], ["f"], name="flat"),
        helper.make_node("Unsqueeze", ["f", "axes"], ["seq"], name="to_sequence"),
        helper.make_node("LSTM", ["seq", "lw", "lr"], ["h"], name="lstm", hidden_size=2),
        helper.make_node("Einsum", ["c", "c"], ["e"], name="mix", equation="nchw,nchw->nchw"),
    ]
    lw = onnx.numpy_helper.from_array(np.ones((1, 8, 64), np.float32), "lw")
    lr = onnx.numpy_helper.from_array(np.ones((1, 8, 2), np.float32), "lr")
    path = _conv_then(
        tmp_path,
        nodes,
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 1, 1, 2]), image_input("e", (1, 4, 4, 4))],
    )
    model = onnx.load(str(path))
    model.graph.initializer.extend([axes, lw, lr])
    onnx.save(model, str(path))
    err = _refused([str(path)], tmp_path / "m.yaml", capsys)
    assert err == (
        f"error: {path}: node to_sequence (Unsqueeze) at #3 of 5, after layer flat:"
        " specc imports an Unsqueeze only as the (N, C) -> (N, C, 1, 1) gate of a Mul\n"
        f"{path}: node lstm (LSTM) at #4 of 5: specc has no layer for this op\n"
        f"{path}: node mix (Einsum) at #5 of 5, after layer c: specc has no layer for this op\n"
    )


def test_allow_partial_stops_at_the_last_mappable_layer(tmp_path, capsys):
    nodes = [
        helper.make_node("Relu", ["c"], ["r"], name="act"),
        helper.make_node("NonMaxSuppression", ["r", "r"], ["keep"], name="nms"),
    ]
    path = _conv_then(tmp_path, nodes, [helper.make_tensor_value_info("keep", TensorProto.INT64, ["n", 3])])
    err = _refused([str(path)], tmp_path / "m.yaml", capsys)
    line = f"{path}: node nms (NonMaxSuppression) at #3 of 3, after layer act: specc has no layer for this op"
    assert err == f"error: {line}\n"
    spec = tmp_path / "m.yaml"
    assert main(["import", str(path), "-o", str(spec), "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert f"  note: --allow-partial: the spec stops at layer act, before {line}\n" in out
    graph = specc.load(str(spec))
    assert [(n.name, n.type) for n in graph.nodes] == [("c", "conv"), ("act", "relu")]
    assert graph.classes is None and spec.with_suffix(".pt").exists()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            [image_input("x", (1, 3, "h", "w"))],
            "input 'x' has shape 1x3xhxw — specc imports one NxCxHxW image input with fixed C, H and W",
        ),
        ([image_input("x"), image_input("x2")], "2 graph inputs (x, x2) — specc networks take one image input"),
    ],
)
def test_dynamic_sizes_and_two_inputs(tmp_path, capsys, inputs, message):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    if len(inputs) == 2:
        nodes = [helper.make_node("Add", ["x", "x2"], ["y"], name="a")]
    path = save_onnx(
        tmp_path, nodes, inputs, [image_input("y", (1, 3, "h", "w") if len(inputs) == 1 else (1, 3, 4, 4))]
    )
    assert _refused([str(path)], tmp_path / "m.yaml", capsys) == f"error: {path}: {message}\n"


@pytest.mark.parametrize(
    ("source", "ref", "message"),
    [
        ("def make_model():\n    raise ValueError('needs a config')\n", "{file}:make_model",
         "calling make_model() fails: ValueError: needs a config"),
        ("def make_model():\n    return 'resnet'\n", "{file}:make_model", "make_model() returns str, expected a torch.nn.Module"),
        (None, "{missing}:make_model", "{missing}: no such file"),
        (None, "no_such_package.nets:make_model", "no module named no_such_package.nets"),
        ("x = 1\n", "{file}:make_model", "{file} has no 'make_model'"),
        ("x = 1\n", "{file}", "expected MODULE:CALLABLE, e.g. nets.py:make_model or mypkg.nets:make_model"),
    ],
)  # fmt: skip
def test_torch_callables_that_cannot_give_a_module(tmp_path, capsys, monkeypatch, source, ref, message):
    monkeypatch.chdir(tmp_path)
    file, missing = tmp_path / "nets.py", tmp_path / "absent.py"
    if source is not None:
        file.write_text(source)
    ref = ref.format(file=file, missing=missing)
    err = _refused(["--torch", ref], tmp_path / "m.yaml", capsys)
    assert err == f"error: --torch {ref}: {message.format(file=file, missing=missing)}\n"
