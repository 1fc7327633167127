"""The paper's models, checked against ../shared/reference/allcnn-tables.md."""

from __future__ import annotations

import pytest

import specc
from specc.shapes import infer
from tests.conftest import SPECS

# Table 3, exact column.
EXACT_PARAMS = {
    "model_a": 839_242,
    "strided_cnn_a": 839_242,
    "convpool_cnn_a": 1_254_250,
    "allcnn_a": 1_254_250,
    "model_b": 885_610,
    "strided_cnn_b": 885_610,
    "convpool_cnn_b": 1_300_618,
    "allcnn_b": 1_300_618,
    "model_c": 954_730,
    "strided_cnn_c": 954_730,
    "convpool_cnn_c": 1_369_738,
    "allcnn_c": 1_369_738,
    "allcnn_imagenet": 9_372_840,
}


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_exact_parameter_counts(name):
    report = specc.check(SPECS / f"{name}.yaml").report
    assert report.total_params == EXACT_PARAMS[name]
    assert report.output_shape == (1000 if name == "allcnn_imagenet" else 10,)


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_six_by_six_before_global_pooling(name):
    result = specc.check(SPECS / f"{name}.yaml")
    gap = next(n for n in result.graph.nodes if n.type == "global_avg_pool")
    before = result.report.shapes[gap.inputs[0]]
    assert before[1:] == (6, 6)


@pytest.mark.parametrize("name", [n for n in EXACT_PARAMS if n != "allcnn_imagenet"])
def test_cifar_dropout_placement(name):
    """20% on the input image; 50% after each pooling layer or the layer that replaces it."""
    graph = specc.load(SPECS / f"{name}.yaml")
    nodes = graph.nodes
    assert nodes[0].type == "dropout" and nodes[0].op.rate == 0.2
    halves = [i for i, n in enumerate(nodes) if n.type == "dropout" and n.op.rate == 0.5]
    assert len(halves) == 2
    for i in halves:
        before = nodes[i - 1]
        is_pool = before.type == "max_pool"
        is_strided_conv = before.type == "conv" and before.op.stride_hw() == (2, 2)
        assert is_pool or is_strided_conv, f"{name}: dropout after {before.name}"


def test_cifar_spatial_sizes_allcnn_c():
    report = specc.check(SPECS / "allcnn_c.yaml").report
    convs = [i for i in report.layers if i.type == "conv"]
    assert [c.shape for c in convs] == [
        (96, 32, 32),
        (96, 32, 32),
        (96, 16, 16),
        (192, 16, 16),
        (192, 16, 16),
        (192, 8, 8),
        (192, 6, 6),
        (192, 6, 6),
        (10, 6, 6),
    ]


def test_allcnn_c100_is_derived_with_base():
    report = specc.check(SPECS / "allcnn_c100.yaml").report
    # 192*100 + 100 = 19,300 parameters in the last layer instead of 1,930.
    assert report.total_params == 1_369_738 - 1_930 + 19_300
    assert report.graph.classes == 100 and report.output_shape == (100,)


def test_large_allcnn_table5_spatial_sizes():
    report = specc.check(SPECS / "allcnn_large.yaml").report
    convs = [i for i in report.layers if i.type == "conv"]
    sizes = [126] + [c.shape[1] for c in convs[:17]]
    assert sizes == [126, 125, 124, 62, 61, 60, 30, 29, 28, 14, 13, 12, 6, 5, 4, 2, 1, 1]
    filters = [c.shape[0] for c in convs[:17]]
    assert filters == [320] * 3 + [640] * 3 + [960] * 3 + [1280] * 3 + [1600] * 3 + [1920] * 2
    hidden = [n for n in report.graph.nodes if n.type == "conv"][:17]
    assert all(n.op.activation == "leaky_relu" for n in hidden)
    assert [n.op.kernel_hw() for n in report.graph.nodes if n.type == "conv"][:16] == [(2, 2)] * 16
    assert "global_avg_pool" not in {n.type for n in report.graph.nodes}


def test_imagenet_table6_spatial_sizes():
    report = specc.check(SPECS / "allcnn_imagenet.yaml").report
    graph = report.graph
    strided = [report.shapes[n.name][1] for n in graph.nodes if n.type == "conv" and n.op.stride_hw() != (1, 1)]
    assert strided == [55, 27, 13, 6]
    assert [n.op.padding for n in graph.nodes if n.type == "conv" and n.op.stride_hw() != (1, 1)] == ["valid"] * 4


def test_residual_example_is_non_sequential():
    graph = specc.load(SPECS / "resnet_tiny.yaml")
    adds = [n for n in graph.nodes if n.type == "add"]
    assert len(adds) == 2 and adds[0].inputs == ("b1_bn2", "stem_relu")
    assert specc.check(graph).report.output_shape == (10,)


def test_receptive_field_and_jump_model_c():
    report = specc.check(SPECS / "model_c.yaml").report
    pool2 = report.info("pool2")
    assert pool2.jump == (4, 4)
    # conv1 3 -> conv2 5 -> pool1 7 (jump 2) -> conv3 11 -> conv4 15 -> pool2 19 (jump 4)
    assert pool2.rf == (19, 19)
    assert report.info("conv1").macs == 96 * 32 * 32 * 3 * 9


def test_macs_total_allcnn_c():
    report = infer(specc.load(SPECS / "allcnn_c.yaml"))
    expected = sum(
        i.shape[0] * i.shape[1] * i.shape[2] * (i.params - i.shape[0]) // i.shape[0] for i in report.layers if i.type == "conv"
    )
    assert report.total_macs == expected
