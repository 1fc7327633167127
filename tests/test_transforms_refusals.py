"""Where a rule cannot apply it says why, at the layer, with file:line:col; errors after a
transform name it and the transforms before it; flags compose in order."""

from __future__ import annotations

import re

import pytest

import specc
from specc.errors import SpecError, UserError
from specc.spec import load_graph
from specc.transforms import make
from tests.conftest import SPECS
from tests.transforms_helpers import structure

HINT = " (--skip-unsupported leaves it in place)"

# One spec with every reason the strided rule can refuse, line numbers in comments.
REFUSALS = """\
name: refusals
input: {channels: 3, size: 64}
classes: 10
defaults:
  conv: {kernel: 3, padding: same, activation: relu}
layers:
  - {type: max_pool, kernel: 2}                                  # 7: reads the input
  - {type: conv, filters: 16}
  - {type: dropout, rate: 0.1}
  - {type: max_pool, kernel: 3, stride: 2, padding: same}        # 10: reads a dropout
  - {type: conv, filters: 16, stride: 2}
  - {type: max_pool, kernel: 2}                                  # 12: conv already strides
  - {name: branch, type: conv, filters: 16}
  - {type: max_pool, kernel: 2, inputs: branch}                  # 14: conv feeds more
  - {name: other, type: conv, filters: 16, inputs: branch, stride: 2}
  - {type: add, inputs: [pool4, other]}
  - {type: avg_pool, kernel: 2}                                  # 17: average pooling
  - {type: conv, filters: 10, kernel: 1}
  - {type: global_avg_pool}
"""


def messages(exc: SpecError) -> list[str]:
    return [d.format() for d in exc.diagnostics]


def test_every_strided_refusal_is_located_and_explained(write_spec):
    path = write_spec(REFUSALS)
    with pytest.raises(SpecError) as info:
        specc.transform(path, replace_pooling="strided")
    t = "transform replace_pooling=strided"
    assert messages(info.value) == [
        f"{path}:7:5: layers[0] (pool1): {t}: cannot rewrite pool1: its input is the network input, not a conv{HINT}",
        f"{path}:10:5: layers[3] (pool2): {t}: cannot rewrite pool2: its input drop1 is a dropout, not a conv{HINT}",
        f"{path}:12:5: layers[5] (pool3): {t}: cannot rewrite pool3: its input conv2 already has stride 2, and stride 4"
        f" would exceed its 3x3 window (input rows and columns skipped){HINT}",
        f"{path}:14:5: layers[7] (pool4): {t}: cannot rewrite pool4: its input branch also feeds other,"
        f" which would see the stride too{HINT}",
        f"{path}:17:5: layers[10] (avgpool1): {t}: avgpool1 is an avg_pool, and --pool-types is max"
        f" — use --pool-types max,avg to replace both kinds{HINT}",
    ]


def test_skip_unsupported_leaves_pools_and_reports_them(write_spec):
    path = write_spec(REFUSALS)
    result = specc.transform(path, replace_pooling="strided", skip_unsupported=True)
    assert result.graph == result.source
    assert [d.severity for d in result.notes] == ["warning"] * 5
    assert result.notes[2].format() == (
        f"{path}:12:5: warning: layers[5] (pool3): transform replace_pooling=strided:"
        " left in place: cannot rewrite pool3: its input conv2 already has stride 2, and stride 4"
        " would exceed its 3x3 window (input rows and columns skipped)"
    )


def test_conv_rule_replaces_any_pool_type_when_asked(write_spec):
    path = write_spec(REFUSALS)
    result = specc.transform(path, replace_pooling="conv", pool_types="max,avg")
    assert not [n for n in result.graph.nodes if n.type.endswith("_pool") and n.type != "global_avg_pool"]
    assert result.graph.node("pool1_conv").op.padding == "valid"  # 2x2/2 valid, as the pool
    assert result.graph.node("add1").inputs == ("pool4_conv", "other")
    assert result.report.shapes["avgpool1_conv"] == result.source_report.shapes["avgpool1"]


def test_strided_rule_refuses_when_sizes_would_differ(write_spec):
    path = write_spec(
        """\
name: sizes
input: {channels: 3, size: 32}
classes: 10
layers:
  - {type: conv, filters: 8, kernel: 3, padding: same}
  - {type: max_pool, kernel: 3, stride: 2}
  - {type: conv, filters: 10, kernel: 1}
  - {type: global_avg_pool}
"""
    )
    with pytest.raises(SpecError) as info:
        specc.transform(path, replace_pooling="strided")
    assert messages(info.value) == [
        f"{path}:6:5: layers[1] (pool1): transform replace_pooling=strided: cannot rewrite pool1:"
        f" conv1 with stride 2 would give 16x16, but pool1 gives 15x15{HINT}"
    ]


def test_strided_rule_looks_through_relu_and_batch_norm(write_spec):
    path = write_spec(
        """\
name: explicit_relu
input: {channels: 3, size: 32}
classes: 10
layers:
  - {type: conv, filters: 8, kernel: 3, padding: same}
  - {type: batch_norm}
  - {type: relu}
  - {type: max_pool, kernel: 2}
  - {type: conv, filters: 10, kernel: 1}
  - {type: global_avg_pool}
"""
    )
    result = specc.transform(path, replace_pooling="strided")
    assert [n.type for n in result.graph.nodes] == ["conv", "batch_norm", "relu", "conv", "global_avg_pool"]
    assert result.graph.node("conv1").op.stride == 2
    assert result.report.shapes["relu1"] == (8, 16, 16)


def test_shape_broken_by_a_transform_names_it_and_the_ones_before():
    with pytest.raises(SpecError) as info:
        specc.transform(SPECS / "model_c.yaml", replace_pooling="conv", input="3x8x8")
    assert messages(info.value) == [
        f"{SPECS / 'model_c.yaml'}:19:5: layers[9] (conv5): transform input=3x8x8 (after replace_pooling=conv):"
        " 3x3 valid conv on a 2x2 input: (2 - 3)/1 + 1 = 0 — expected an output of at least 1x1"
    ]


def test_classes_refused_through_concat(write_spec):
    path = write_spec(
        """\
name: two_heads
input: {channels: 3, size: 8}
classes: 10
layers:
  - {name: a, type: conv, filters: 4, kernel: 1}
  - {name: b, type: conv, filters: 6, kernel: 1, inputs: input}
  - {type: concat, inputs: [a, b]}
  - {type: global_avg_pool}
"""
    )
    with pytest.raises(SpecError) as info:
        specc.transform(path, classes=3)
    assert messages(info.value) == [
        f"{path}:8:5: layers[3] (gap1): transform classes=3: cannot change the class count:"
        " the class scores are a concat of several layers — which one should change is not clear"
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width_mult": 0}, "width-mult 0: expected a number > 0, e.g. 0.5 or 2"),
        ({"width_mult": 2, "round_to": 0}, "round 0: expected a positive integer, e.g. 8"),
        ({"classes": 0}, "classes 0: expected a positive integer"),
        ({"input": "28x28"}, "input '28x28': expected CxHxW, e.g. 1x28x28 or 3x32x32"),
        ({"replace_pooling": "avg"}, "--replace-pooling avg: expected one of strided, conv, convpool"),
        ({"replace_pooling": "conv", "pool_types": "max,min"}, "unknown pool type 'min'"),
        ({"replace_polling": "conv"}, "unknown transform 'replace_polling' — did you mean 'replace_pooling'?"),
        ({}, "no transform given"),
    ],
)
def test_bad_options_are_one_line_user_errors(kwargs, message):
    with pytest.raises(UserError, match=re.escape(message)):
        specc.transform(SPECS / "model_c.yaml", **kwargs)


# -- composition --------------------------------------------------------------------------
def test_composition_order_matters():
    # conv then inverse: ConvPool-CNN-C. Inverse then conv: model C has no strided conv (a
    # no-op, noted), then the pools become convs: ALL-CNN-C.
    forward = specc.transform(SPECS / "model_c.yaml", replace_pooling="conv", replace_stride="maxpool")
    backward = specc.transform(
        SPECS / "model_c.yaml", steps=[("replace_stride", "maxpool"), ("replace_pooling", "conv")]
    )
    assert [n.type for n in forward.graph.nodes].count("max_pool") == 2
    assert [n.type for n in backward.graph.nodes].count("max_pool") == 0
    assert "nothing to replace" in backward.notes[0].message
    # Width and input commute.
    a = specc.transform(SPECS / "model_c.yaml", width_mult=0.5, input="1x28x28").graph
    b = specc.transform(SPECS / "model_c.yaml", input="1x28x28", width_mult=0.5).graph
    assert a == b


def test_repeated_flags_round_trip():
    # ALL-CNN-C -> pooled (inverse) -> strided again: the stride moves back onto the conv.
    result = specc.transform(
        SPECS / "model_c.yaml",
        steps=[("replace_pooling", "conv"), ("replace_stride", "maxpool"), ("replace_pooling", "strided")],
    )
    assert structure(result.graph) == structure(load_graph(SPECS / "allcnn_c.yaml"))
    assert [t.label() for t in result.steps] == [
        "replace_pooling=conv",
        "replace_stride=maxpool",
        "replace_pooling=strided",
    ]


def test_make_reads_the_table():
    assert make("replace_pooling", "convpool").label() == "replace_pooling=convpool"
    assert make("width_mult", "0.5", {"round_to": "8"}).label() == "width_mult=0.5, round=8"
    assert make("input", "1x28x28").shape == (1, 28, 28)


STEM = """
name: stem
input: {channels: 3, size: 32}
classes: 10
layers:
  - {name: conv1, type: conv, filters: 8, kernel: 7, stride: 2, padding: 3, activation: relu}
  - {name: maxpool, type: max_pool, kernel: 3, stride: 2, padding: 1}
  - {name: head, type: conv, filters: 10, kernel: 1}
  - {type: global_avg_pool}
"""


def test_strided_rule_composes_a_strided_stem_with_its_pool(write_spec):
    # ResNet's stem: a 7x7/2 conv and a 3x3/2 max-pool -> one 7x7/4 conv, same output size
    # (PyTorch: floor((32 + 6 - 7)/2) + 1 = 16, pool floor((16 + 2 - 3)/2) + 1 = 8;
    # 7x7/4: floor((32 + 6 - 7)/4) + 1 = 8).
    result = specc.transform(write_spec(STEM), replace_pooling="strided")
    assert [n.name for n in result.graph.nodes][:2] == ["conv1", "head"]
    assert result.graph.node("conv1").op.stride_hw() == (4, 4)
    assert result.report.shapes["conv1"] == (8, 8, 8)
