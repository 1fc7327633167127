"""base:, repeat, defaults, --set, stdin and naming."""

from __future__ import annotations

import io

import pytest

import specc
from specc.errors import SpecError, UserError
from specc.spec import load_graph, load_graph_text
from tests.conftest import SPECS

HEAD = "name: t\ninput: {channels: 3, size: 8}\nclasses: 4\n"


def test_unnamed_layers_get_stable_readable_names():
    graph = specc.load(SPECS / "model_c.yaml")
    assert [n.name for n in graph.nodes] == [
        "drop1", "conv1", "conv2", "pool1", "drop2", "conv3", "conv4",
        "pool2", "drop3", "conv5", "conv6", "conv7", "gap1", "softmax1",
    ]  # fmt: skip


def test_auto_names_skip_explicit_names():
    text = HEAD + "layers:\n  - {name: conv1, type: relu}\n  - {type: conv, filters: 4, kernel: 1}\n  - {type: global_avg_pool}\n"
    graph = load_graph_text(text, "t.yaml")
    assert [n.name for n in graph.nodes] == ["conv1", "conv2", "gap1"]


def test_repeat_with_vars_and_index():
    text = HEAD + (
        "layers:\n"
        "  - repeat: 3\n"
        "    vars: {f: [8, 16, 4]}\n"
        "    layers:\n"
        "      - {name: c$i, type: conv, filters: $f, kernel: 1}\n"
        "      - {name: 'r${i}', type: relu}\n"
        "  - {type: global_avg_pool}\n"
    )
    graph = load_graph_text(text, "t.yaml")
    assert [n.name for n in graph.nodes] == ["c1", "r1", "c2", "r2", "c3", "r3", "gap1"]
    assert [n.op.filters for n in graph.nodes if n.type == "conv"] == [8, 16, 4]


def test_repeat_errors_are_located():
    text = HEAD + "layers:\n  - repeat: 2\n    vars: {f: [8]}\n    layers: [{type: conv, filters: $f, kernel: 1}]\n"
    with pytest.raises(SpecError) as err:
        load_graph_text(text, "t.yaml")
    assert str(err.value) == "t.yaml:6:15: layers[0].vars.f: expected a list of 2 values (one per repetition), got 1"


def test_unknown_repeat_variable(write_spec):
    text = HEAD + "layers:\n  - repeat: 2\n    layers: [{type: conv, filters: $g, kernel: 1}]\n  - {type: global_avg_pool}\n"
    with pytest.raises(SpecError) as err:
        specc.check(write_spec(text))
    assert "unknown variable $g" in str(err.value)


def test_base_with_layer_patch_and_positions(tmp_path):
    (tmp_path / "base.yaml").write_text(HEAD + "layers:\n  - {type: conv, filters: 4, kernel: 1}\n  - {type: global_avg_pool}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nname: child\nclasses: 6\nlayers:\n  conv1: {filters: 6}\n")
    graph = load_graph(tmp_path / "child.yaml")
    assert graph.name == "child" and graph.classes == 6 and graph.nodes[0].op.filters == 6
    assert specc.check(graph).report.output_shape == (6,)
    # An error in the patch points at the child file, one in an inherited value at the base.
    (tmp_path / "bad.yaml").write_text("base: base.yaml\nlayers:\n  conv1: {filters: 0}\n  conv9: {filters: 1}\n")
    with pytest.raises(SpecError) as err:
        load_graph(tmp_path / "bad.yaml")
    lines = [d.format().replace(str(tmp_path) + "/", "") for d in err.value.diagnostics]
    assert lines == [
        "bad.yaml:4:20: layers.conv9: no layer named 'conv9' — did you mean 'conv1'?",
        "bad.yaml:3:20: layers[0] (conv1): filters = 0: input should be greater than 0 — expected a positive integer (output channels)",
    ]


def test_base_missing_and_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(SpecError, match="base cycle"):
        load_graph(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nothere.yaml\n")
    with pytest.raises(SpecError) as err:
        load_graph(tmp_path / "c.yaml")
    assert str(err.value).endswith(f":1:7: base: no such file 'nothere.yaml' (looked for {tmp_path / 'nothere.yaml'})")


def test_defaults_merge_key_by_key_in_derived_specs(tmp_path):
    (tmp_path / "base.yaml").write_text(
        HEAD + "defaults:\n  conv: {kernel: 1, activation: relu}\nlayers:\n  - {type: conv, filters: 4}\n  - {type: global_avg_pool}\n"
    )
    (tmp_path / "child.yaml").write_text("base: base.yaml\ndefaults:\n  conv: {activation: none}\n")
    conv = load_graph(tmp_path / "child.yaml").nodes[0].op
    assert conv.kernel == 1 and conv.activation == "none"


def test_set_overrides(write_spec):
    path = str(SPECS / "allcnn_c.yaml")
    graph = specc.check(path, ["classes=100", "labels=null", "layers.conv9.filters=100", "input.size=[40, 40]"]).graph
    assert graph.classes == 100 and graph.input_shape == (3, 40, 40)
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        specc.load(path, ["classes"])


def test_stdin(monkeypatch):
    text = (SPECS / "allcnn_c.yaml").read_text()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert specc.check("-").report.total_params == 1_369_738


def test_python_api_raises_spec_error_with_diagnostics():
    with pytest.raises(SpecError) as err:
        specc.check(HEAD + "layers:\n  - {type: conv, filters: 4, kernel: 9}\n")
    (d,) = err.value.diagnostics
    assert (d.pos.line, d.pos.col, d.path, d.label) == (5, 5, "layers[0]", "conv1")


def test_ceil_mode_matches_caffe_sizes():
    text = HEAD.replace("size: 8", "size: 32") + (
        "layers:\n  - {type: max_pool, kernel: 3, stride: 2, ceil_mode: true}\n"
        "  - {type: max_pool, kernel: 3, stride: 2, ceil_mode: true}\n  - {type: conv, filters: 4, kernel: 1}\n"
        "  - {type: global_avg_pool}\n"
    )
    report = specc.check(text).report
    # Caffe: pad 0 with ceil rounding takes 32 -> 16 -> 8, as the reference says.
    assert [report.shapes[n][1] for n in ("pool1", "pool2")] == [16, 8]
