"""Unknown layer types: the error lists the layer types and suggests the nearest one by
meaning (other frameworks' names) as well as by spelling — only types the op table has."""

from __future__ import annotations

import pytest

from specc.cli import main
from specc.ops import OPS
from specc.type_names import ALIASES, suggest_type, unknown_type_message

TYPES = ", ".join(sorted(OPS))


def check_errors(tmp_path, monkeypatch, capsys, text: str) -> list[str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(text)
    assert main(["check", "spec.yaml"]) == 2
    return capsys.readouterr().err.splitlines()


def test_a_framework_name_suggests_the_specc_type_and_lists_all_types(tmp_path, monkeypatch, capsys):
    text = "name: t\ninput: {channels: 3, size: 8}\nlayers:\n  - {type: dense, units: 3}\n"
    assert check_errors(tmp_path, monkeypatch, capsys, text) == [
        f"spec.yaml:4:12: layers[0] (layer1): unknown layer type 'dense' — did you mean 'linear'? (layer types: {TYPES})"
    ]


def test_defaults_with_an_unknown_type(tmp_path, monkeypatch, capsys):
    text = "name: t\ninput: {channels: 3, size: 8}\ndefaults:\n  Conv2d: {kernel: 3}\nlayers:\n  - {type: relu}\n"
    assert check_errors(tmp_path, monkeypatch, capsys, text) == [
        f"spec.yaml:4:3: defaults: unknown layer type 'Conv2d' — did you mean 'conv'? (layer types: {TYPES})"
    ]


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("dense", "linear"),
        ("fc", "linear"),
        ("BatchNorm2d", "batch_norm"),
        ("bn", "batch_norm"),
        ("maxpool", "max_pool"),
        ("MaxPool2d", "max_pool"),
        ("Max-Pool", "max_pool"),
        ("avgpool", "avg_pool"),
        ("gap", "global_avg_pool"),
        ("GlobalAveragePooling2D", "global_avg_pool"),
        ("conv2d", "conv"),
        ("convolution", "conv"),
        ("softmax2d", "softmax"),
        ("LeakyReLU", "leaky_relu"),
        ("dropout2d", "dropout"),
        ("concatenate", "concat"),
        ("relu_", "relu"),  # spelling
        ("lineer", "linear"),  # spelling
    ],
)
def test_suggestions(name, meant):
    assert suggest_type(name) == meant
    assert unknown_type_message(name) == f"unknown layer type '{name}' — did you mean '{meant}'? (layer types: {TYPES})"


def test_an_alias_suggests_only_a_type_the_op_table_has(monkeypatch):
    monkeypatch.delitem(OPS, "local_response_norm", raising=False)
    assert suggest_type("lrn") is None
    types = ", ".join(sorted(OPS))
    assert unknown_type_message("lrn") == f"unknown layer type 'lrn' (layer types: {types})"
    monkeypatch.setitem(OPS, "local_response_norm", OPS["relu"])  # a type added later is found when asked
    assert suggest_type("lrn") == "local_response_norm"


def test_an_alias_finds_the_type_however_it_is_spelled(monkeypatch):
    monkeypatch.setitem(OPS, "hardswish", OPS["relu"])  # the alias table writes hard_swish
    assert suggest_type("hswish") == "hardswish"


def test_no_suggestion_for_a_name_that_is_a_layer_type():
    for kind in OPS:
        assert suggest_type(kind) is None, kind


def test_every_suggestion_is_a_layer_type():
    for alias in ALIASES:
        meant = suggest_type(alias)
        assert meant is None or meant in OPS, alias


def test_not_a_string_gets_no_suggestion():
    assert unknown_type_message(3) == f"unknown layer type '3' (layer types: {TYPES})"
