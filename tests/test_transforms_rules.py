"""The transforms on the paper's models: golden before/after texts, the nine equalities with
the hand-written specs, the inverse, re-targeting, and purity."""

from __future__ import annotations

import pytest

import specc
from specc.emit import to_yaml
from specc.shapes import infer
from specc.spec import load_graph, load_graph_text
from specc.transforms import TRANSFORMS, ReplacePooling, run
from tests.conftest import SPECS
from tests.transforms_helpers import assert_golden, structure

GOLDEN_CASES = {
    "model_c.replace_pooling_strided": ("model_c", {"replace_pooling": "strided"}),
    "model_c.replace_pooling_conv": ("model_c", {"replace_pooling": "conv"}),
    "model_c.replace_pooling_convpool": ("model_c", {"replace_pooling": "convpool"}),
    "allcnn_c.replace_stride_maxpool": ("allcnn_c", {"replace_stride": "maxpool"}),
    "model_c.width_mult_0.5_round_8": ("model_c", {"width_mult": 0.5, "round_to": 8}),
    "model_c.classes_100": ("model_c", {"classes": 100}),
    "model_c.input_1x28x28": ("model_c", {"input": "1x28x28"}),
    "resnet_tiny.fc_to_conv": ("resnet_tiny", {"fc_to_conv": True}),
    "resnet_tiny.fold_batch_norm": ("resnet_tiny", {"fold_batch_norm": True}),
    "model_c.linear_scores": ("model_c", {"linear_scores": True}),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_before_after(case):
    spec, kwargs = GOLDEN_CASES[case]
    result = specc.transform(SPECS / f"{spec}.yaml", **kwargs)
    steps = ", ".join(t.label() for t in result.steps)
    text = (
        "# before\n"
        + result.source.to_text(result.source_report.shapes)
        + f"# after {steps}\n"
        + result.graph.to_text(result.report.shapes)
    )
    assert_golden(case, text)


def test_every_table_entry_has_a_golden_test():
    covered = {name for _, kwargs in GOLDEN_CASES.values() for name in kwargs}
    assert set(TRANSFORMS) <= covered


# -- the nine equalities ------------------------------------------------------------------
DERIVED = {"strided": "strided_cnn_{}", "conv": "allcnn_{}", "convpool": "convpool_cnn_{}"}


@pytest.mark.parametrize("model", ["a", "b", "c"])
@pytest.mark.parametrize("rule", sorted(DERIVED))
def test_rule_gives_the_hand_written_model(model, rule):
    result = specc.transform(SPECS / f"model_{model}.yaml", replace_pooling=rule)
    expected = load_graph(SPECS / f"{DERIVED[rule].format(model)}.yaml")
    assert structure(result.graph) == structure(expected)
    # The canonical YAML reads back as the same graph, and passes `check`.
    text = to_yaml(result.graph)
    assert load_graph_text(text, "<transformed>") == result.graph
    assert specc.check(text).report.total_params == infer(expected).total_params


def test_new_layers_are_named_after_the_pool():
    graph = specc.transform(SPECS / "model_c.yaml", replace_pooling="conv").graph
    assert [n.name for n in graph.nodes if n.name.startswith("pool")] == ["pool1_conv", "pool2_conv"]
    convpool = specc.transform(SPECS / "model_c.yaml", replace_pooling="convpool").graph
    names = [n.name for n in convpool.nodes]
    assert names[3:6] == ["pool1_conv", "pool1", "drop2"]


# -- the inverse --------------------------------------------------------------------------
def test_inverse_of_allcnn_c_is_convpool_cnn_c():
    result = specc.transform(SPECS / "allcnn_c.yaml", replace_stride="maxpool")
    assert structure(result.graph) == structure(load_graph(SPECS / "convpool_cnn_c.yaml"))
    # Every convolution keeps its name and weight shapes: a checkpoint carries over as is.
    before = {n.name: n.op.kernel for n in result.source.nodes if n.type == "conv"}
    after = {n.name: n.op.kernel for n in result.graph.nodes if n.type == "conv"}
    assert before == after


@pytest.mark.parametrize("model", ["a", "b", "c"])
def test_conv_then_inverse_round_trips_to_convpool(model):
    result = specc.transform(SPECS / f"model_{model}.yaml", replace_pooling="conv", replace_stride="maxpool")
    assert structure(result.graph) == structure(load_graph(SPECS / f"convpool_cnn_{model}.yaml"))


def test_inverse_on_imagenet_and_large_models():
    large = specc.transform(SPECS / "allcnn_large.yaml", replace_stride="maxpool")
    assert large.report.output_shape == (10,)
    assert len([n for n in large.graph.nodes if n.type == "max_pool"]) == 5
    # Valid-padded strided convs: a padded 3x3 pool restores each size (55 -> 53 -> 27).
    imagenet = specc.transform(SPECS / "allcnn_imagenet.yaml", replace_stride="maxpool")
    pools = [n for n in imagenet.graph.nodes if n.type == "max_pool"]
    assert [(p.name, p.op.stride) for p in pools] == [
        ("conv1_pool", 4),
        ("conv3_pool", 2),
        ("conv6_pool", 2),
        ("conv9_pool", 2),
    ]
    assert [imagenet.report.shapes[p.name] for p in pools] == [
        imagenet.source_report.shapes[p.inputs[0]] for p in pools
    ]


# -- re-targeting -------------------------------------------------------------------------
def test_classes_100_gives_allcnn_c100():
    result = specc.transform(SPECS / "allcnn_c.yaml", classes=100)
    assert structure(result.graph) == structure(load_graph(SPECS / "allcnn_c100.yaml"))
    assert result.graph.labels is None
    assert "dropped the 10 labels" in result.notes[0].message


def test_input_retarget_to_mnist():
    result = specc.transform(SPECS / "allcnn_c.yaml", input="1x28x28")
    assert result.graph.input_shape == (1, 28, 28)
    assert result.report.shapes["conv7"] == (192, 5, 5)


def test_width_mult_keeps_classifier_and_rounds():
    result = specc.transform(SPECS / "model_c.yaml", width_mult=0.3, round_to=8)
    filters = [n.op.filters for n in result.graph.nodes if n.type == "conv"]
    assert filters == [32, 32, 56, 56, 56, 56, 10]
    assert result.report.output_shape == (10,)


def test_fc_to_conv_on_a_one_by_one_map():
    text = """
name: fc_head
input: {channels: 3, size: 8}
classes: 10
layers:
  - {type: conv, filters: 16, kernel: 8, activation: relu}
  - {type: flatten}
  - {type: linear, units: 32, activation: relu}
  - {type: dropout, rate: 0.5}
  - {type: linear, units: 10}
  - {type: softmax}
"""
    result = specc.transform(text, fc_to_conv=True)
    assert [n.type for n in result.graph.nodes] == ["conv", "conv", "dropout", "conv", "global_avg_pool", "softmax"]
    assert result.report.total_params == result.source_report.total_params
    assert result.graph.node("fc2").op.activation == "none"
    assert result.graph.node("gap").inputs == ("fc2",)


# -- purity -------------------------------------------------------------------------------
def test_transforms_never_mutate_their_input():
    graph = load_graph(SPECS / "model_c.yaml")
    snapshot = to_yaml(graph)
    nodes = graph.nodes
    result = run(graph, [ReplacePooling("conv")])
    assert result.graph is not graph
    assert graph.nodes is nodes and to_yaml(graph) == snapshot
    assert result.source is graph
