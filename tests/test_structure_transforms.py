"""The transforms on the structure ops: each handles them, or refuses at the layer with the
reason. Checked: --width-mult (conv_transpose has a width), --classes (a head before a
maxout keeps its outputs per class), --input (shape rules re-checked, located),
--replace-pooling (which layers a stride moves past) and fc_to_conv (the head ops carried to
a 1x1 map compute the same function, trained weights included)."""

from __future__ import annotations

import pytest
import torch

import specc
import specc_torch
from specc.errors import SpecError
from specc.transforms.weights import remap_state

HEADER = "name: s\ninput: {channels: 3, size: 8}\nclasses: 4\nlayers:\n"
C0 = "  - {name: c0, type: conv, filters: 8, kernel: 3, padding: same, activation: relu}\n"
GAP_HEAD = "  - {type: global_avg_pool}\n  - {name: fc, type: linear, units: 4}\n"


def messages(exc: SpecError) -> list[str]:
    return [d.format() for d in exc.diagnostics]


def test_width_mult_scales_conv_transpose():
    spec = (
        HEADER + C0 + "  - {name: up, type: conv_transpose, filters: 8, kernel: 2, stride: 2, groups: 4}\n" + GAP_HEAD
    )
    graph = specc.transform(spec, width_mult=0.5).graph
    assert (graph.node("c0").op.filters, graph.node("up").op.filters, graph.node("up").op.groups) == (4, 4, 4)
    assert graph.node("fc").op.units == 4  # the classifier keeps the class count
    assert specc.check(graph).report.shapes["up"] == (4, 16, 16)


def test_width_mult_refuses_at_the_maxout_it_breaks():
    spec = HEADER + C0 + "  - {name: m, type: maxout, pieces: 2}\n" + GAP_HEAD
    assert specc.transform(spec, width_mult=0.5).graph.node("c0").op.filters == 4
    with pytest.raises(SpecError) as info:
        specc.transform(spec, width_mult=0.625)  # 8 -> 5 channels, not a multiple of 2 pieces
    [error] = messages(info.value)
    assert "<string>:6:5: layers[1] (m): transform width_mult=0.625: maxout of 2 pieces on 5 channels" in error


def test_classes_keeps_outputs_per_class_through_maxout():
    spec = HEADER + C0 + "  - {type: global_avg_pool}\n  - {name: fc, type: linear, units: 8}\n"
    spec += "  - {name: m, type: maxout, pieces: 2}\n  - {type: log_softmax}\n"
    result = specc.transform(spec, classes=7)
    assert (result.graph.node("fc").op.units, result.report.shapes["m"]) == (14, (7,))


def test_classes_sets_a_conv_transpose_head():
    spec = HEADER + C0 + "  - {name: up, type: conv_transpose, filters: 4, kernel: 2, stride: 2}\n"
    spec += "  - {type: global_avg_pool}\n"
    graph = specc.transform(spec, classes=10).graph
    assert graph.node("up").op.filters == 10


def test_input_rechecks_every_structure_op():
    spec = (
        HEADER + C0 + "  - {name: up, type: upsample, scale: 2}\n  - {name: p, type: pad, padding: 3, mode: reflect}\n"
    )
    spec += "  - {name: fixed, type: upsample, mode: bilinear, size: 12}\n"
    spec += "  - {name: ct, type: conv_transpose, filters: 8, kernel: 3, stride: 2}\n" + GAP_HEAD
    shapes = specc.transform(spec, input="3x4x4").report.shapes
    assert [shapes[n] for n in ("up", "p", "fixed", "ct")] == [(8, 8, 8), (8, 14, 14), (8, 12, 12), (8, 25, 25)]
    with pytest.raises(SpecError) as info:
        specc.transform(spec, input="3x1x1")
    [error] = messages(info.value)
    assert "<string>:7:5: layers[2] (p): transform input=3x1x1: reflect padding of 3 rows on a 2x2 input" in error


def test_replace_pooling_moves_a_stride_past_scale_and_identity_only():
    spec = HEADER + C0 + "  - {name: s, type: scale}\n  - {name: i, type: identity}\n  - {type: max_pool, kernel: 2}\n"
    graph = specc.transform(spec + GAP_HEAD, replace_pooling="strided").graph
    assert graph.node("c0").op.stride_hw() == (2, 2) and [n.type for n in graph.nodes][:3] == [
        "conv",
        "scale",
        "identity",
    ]
    for layer, why in [
        ("{name: t, type: conv_transpose, filters: 8, kernel: 1}", "its input t is a conv_transpose, not a conv"),
        ("{name: t, type: maxout, pieces: 2}", "its input t is a maxout, not a conv"),
        ("{name: t, type: pad, padding: 1}", "its input t is a pad, not a conv"),
        ("{name: t, type: upsample, scale: 1}", "its input t is a upsample, not a conv"),
    ]:
        text = HEADER + C0 + f"  - {layer}\n  - {{type: max_pool, kernel: 2}}\n" + GAP_HEAD
        with pytest.raises(SpecError) as info:
            specc.transform(text, replace_pooling="strided")
        [error] = messages(info.value)
        assert "<string>:7:5: layers[2] (pool1): transform replace_pooling=strided: cannot rewrite pool1:" in error
        assert why in error, error
    # the ALL-CNN rule replaces the pool itself, whatever feeds it
    text = HEADER + C0 + "  - {name: t, type: maxout, pieces: 2}\n  - {type: max_pool, kernel: 2}\n" + GAP_HEAD
    assert [n.type for n in specc.transform(text, replace_pooling="conv").graph.nodes][2] == "conv"


def test_fc_to_conv_carries_the_head_ops_and_their_weights():
    """On a 1x1 map the converted network computes the same function: scale, maxout,
    identity and log_softmax act per channel there as they acted per feature."""
    spec = (
        "name: s\ninput: {channels: 3, size: 4}\nclasses: 3\nlayers:\n"
        "  - {name: c0, type: conv, filters: 8, kernel: 4, activation: relu}\n"  # a 1x1 map
        "  - {type: flatten}\n  - {name: s, type: scale}\n  - {name: m, type: maxout, pieces: 2}\n"
        "  - {name: fc1, type: linear, units: 6}\n  - {name: i, type: identity}\n  - {name: fc2, type: linear, units: 3}\n"
        "  - {type: log_softmax}\n"
    )
    result = specc.transform(spec, fc_to_conv=True)
    assert [n.type for n in result.graph.nodes] == [
        "conv", "scale", "maxout", "conv", "identity", "conv", "global_avg_pool", "log_softmax"
    ]  # fmt: skip
    before = specc_torch.build(result.source, seed=1).eval()
    with torch.no_grad():
        before.get_parameter("s.weight").uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(0))
    after = specc_torch.build(result.graph).eval()
    after.load_state_dict(remap_state(before.state_dict(), result.source_report, result.report, "fc_to_conv", "-"))
    x = torch.randn(5, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(after(x), before(x))
