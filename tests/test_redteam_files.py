"""Hostile and odd files given to `specc draw`, `specc fmt` and `specc import`: each ends with
one line naming the file at fault and exit 2 (never an internal error), and nothing written;
a symlink is written through, not replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from specc.cli import main
from tests.redteam_helpers import refusal

ROOT = Path(__file__).resolve().parents[1]
MODEL_A = ROOT / "specs" / "model_a.yaml"


def _conv_model(weights: np.ndarray) -> onnx.ModelProto:
    """x (1x3x8x8) -> Conv 3x3 same -> GlobalAveragePool -> Flatten: a model specc imports."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "m", [x], [y], [numpy_helper.from_array(weights, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _weights() -> np.ndarray:
    return np.arange(4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3) / 100


def test_draw_to_a_directory_says_so(tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    line = refusal(["draw", str(MODEL_A), "-o", str(folder)], capsys)
    assert line == f"error: -o {folder}: is a directory, expected a file name (.svg, .png, .pdf or .dot)"


def test_fmt_in_place_writes_through_a_symlink(tmp_path, capsys):
    target = tmp_path / "real.yaml"
    target.write_text(MODEL_A.read_text())
    link = tmp_path / "link.yaml"
    link.symlink_to(target.name)
    assert main(["fmt", "--in-place", str(link)]) == 0
    assert link.is_symlink() and link.readlink() == Path("real.yaml")
    # the target now holds the canonical form: every layer named (model_a's are not, in the file)
    assert "{name: conv1, type: conv, filters: 96, kernel: 5}" in target.read_text()
    assert main(["fmt", "--check", str(target)]) == 0


def test_import_an_initializer_larger_than_its_data(tmp_path, capsys):
    model = _conv_model(_weights())
    tensor = model.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.extend([100000, 100000, 3, 3])  # declares 90 G values, holds 108
    path = tmp_path / "huge.onnx"
    path.write_bytes(model.SerializeToString())
    line = refusal(["import", str(path), "-o", str(tmp_path / "m.yaml")], capsys)
    assert line == (
        f"error: {path}: initializer 'w' (100000x100000x3x3): cannot reshape array of size 108 into shape "
        "(100000,100000,3,3)"
    )
    assert not (tmp_path / "m.yaml").exists() and not (tmp_path / "m.pt").exists()


def test_import_refuses_nan_weights(tmp_path, capsys):
    weights = _weights()
    weights[1, 2, 0, 0] = np.nan
    path = tmp_path / "nan.onnx"
    onnx.save(_conv_model(weights), str(path))
    line = refusal(["import", str(path), "-o", str(tmp_path / "m.yaml")], capsys)
    assert line == f"error: {path}: initializer 'w' holds NaN — the weights are broken, re-export them"
    assert not (tmp_path / "m.yaml").exists()


def test_import_an_empty_file(tmp_path, capsys):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert refusal(["import", str(path), "-o", str(tmp_path / "m.yaml")], capsys) == (
        f"error: {path}: an empty file, not an ONNX model"
    )


def _external(tmp_path: Path, location: str) -> Path:
    model = _conv_model(_weights())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "432")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = tmp_path / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_import_external_data_outside_the_folder_is_named(tmp_path, capsys):
    path = _external(tmp_path, "/etc/passwd")
    line = refusal(["import", str(path), "-o", str(tmp_path / "m.yaml")], capsys)
    assert line.startswith(f"error: {path}: Location of external TensorProto ( tensor name: w) should be a relative")
    path = _external(tmp_path, "missing.bin")
    line = refusal(["import", str(path), "-o", str(tmp_path / "m.yaml")], capsys)
    assert line.startswith(f"error: {path}: Data of TensorProto ( tensor name: w) should be stored in")
    assert "missing.bin" in line


def test_import_a_constant_node_larger_than_its_data(tmp_path, capsys):
    model = _conv_model(_weights())
    tensor = onnx.TensorProto()
    tensor.CopyFrom(model.graph.initializer[0])
    del model.graph.initializer[:]
    del tensor.dims[:]
    tensor.dims.extend([100000, 100000, 3, 3])
    model.graph.node.insert(0, helper.make_node("Constant", [], ["w"], value=tensor))
    path = tmp_path / "const.onnx"
    path.write_bytes(model.SerializeToString())
    line = refusal(["import", str(path), "-o", str(tmp_path / "m.yaml")], capsys)
    assert line == (
        f"error: {path}: initializer 'w' (100000x100000x3x3): cannot reshape array of size 108 into shape "
        "(100000,100000,3,3)"
    )
