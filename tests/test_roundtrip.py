"""spec -> IR -> YAML -> IR is the identity; fmt is idempotent."""

from __future__ import annotations

import pytest

import specc
from specc.emit import to_yaml
from specc.spec import load_graph_text
from tests.conftest import SPECS

ALL = sorted(p.name for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize("name", ALL)
def test_round_trip_is_identity(name):
    graph = specc.load(SPECS / name)
    text = to_yaml(graph)
    again = load_graph_text(text, "<fmt>")
    assert again == graph
    assert to_yaml(again) == text


def test_equality_sees_parameter_changes():
    graph = specc.load(SPECS / "allcnn_c.yaml")
    changed = graph.with_nodes(n.with_params(filters=97) if n.name == "conv1" else n for n in graph.nodes)
    assert changed != graph
    assert load_graph_text(to_yaml(changed), "<fmt>") == changed


def test_explicit_value_equal_to_class_default_survives_spec_defaults():
    # defaults say relu; a layer explicitly asking for none must keep none through fmt.
    text = (
        "name: t\ninput: {channels: 3, size: 8}\nclasses: 4\n"
        "defaults:\n  conv: {kernel: 1, activation: relu}\n"
        "layers:\n  - {type: conv, filters: 4, activation: none}\n  - {type: global_avg_pool}\n"
    )
    graph = load_graph_text(text, "t.yaml")
    assert graph.nodes[0].op.activation == "none"
    again = load_graph_text(to_yaml(graph), "<fmt>")
    assert again.nodes[0].op.activation == "none" and again == graph


def test_fmt_output_of_repeat_is_expanded_and_named():
    text = to_yaml(specc.load(SPECS / "allcnn_large.yaml"))
    assert "repeat" not in text and "$" not in text
    assert "  - {name: conv15, type: conv, filters: 1600, stride: 2}" in text.splitlines()


def test_outputs_and_a_spec_without_classes_round_trip():
    text = (
        "name: features\ninput: {channels: 3, size: 8}\noutputs: [stage1, head]\n"
        "layers:\n  - {name: stage1, type: conv, filters: 4, kernel: 3, padding: same}\n"
        "  - {type: global_avg_pool}\n  - {name: head, type: linear, units: 2}\n"
    )
    graph = load_graph_text(text, "features.yaml")
    canonical = to_yaml(graph)
    assert "classes" not in canonical and "outputs: [stage1, head]" in canonical.splitlines()
    again = load_graph_text(canonical, "<fmt>")
    assert again == graph and again.outputs == ("stage1", "head") and again.classes is None
    assert to_yaml(again) == canonical
