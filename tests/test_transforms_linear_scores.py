"""`linear_scores`: the rectifier on the class scores comes off, nothing else changes."""

from __future__ import annotations

import torch

import specc
from specc.spec import load_graph_text
from specc_torch import build

# Class scores from a 1x1 conv, then a standalone ReLU, global pooling and softmax.
STANDALONE = """
name: standalone
input: {channels: 1, size: 6}
classes: 3
layers:
  - {name: c1, type: conv, filters: 4, kernel: 3, activation: relu}
  - {name: scores, type: conv, filters: 3, kernel: 1}
  - {name: clip, type: relu}
  - {name: gap, type: global_avg_pool}
  - {name: prob, type: softmax}
"""
FUSED = STANDALONE.replace("kernel: 1}", "kernel: 1, activation: relu}").replace("  - {name: clip, type: relu}\n", "")


def test_standalone_rectifier_is_removed_and_the_scores_are_the_conv_outputs():
    graph = load_graph_text(STANDALONE, "standalone.yaml")
    result = specc.transform(graph, linear_scores=True)
    assert [n.name for n in result.graph.nodes] == ["c1", "scores", "gap", "prob"]
    assert result.graph.node("gap").inputs == ("scores",)
    before, after = build(graph, seed=3, output="probs"), build(result.graph, seed=3, output="probs")
    after.load_state_dict(before.state_dict())  # same weights, same names
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        features = torch.relu(
            torch.nn.functional.conv2d(x, before.state_dict()["c1.weight"], before.state_dict()["c1.bias"])
        )
        scores = torch.nn.functional.conv2d(
            features, before.state_dict()["scores.weight"], before.state_dict()["scores.bias"]
        )
        expected = torch.softmax(scores.mean(dim=(2, 3)), dim=1)  # by hand: no ReLU on the scores
        torch.testing.assert_close(after(x), expected, rtol=1e-6, atol=1e-7)
        clipped = torch.softmax(torch.relu(scores).mean(dim=(2, 3)), dim=1)
        torch.testing.assert_close(before(x), clipped, rtol=1e-6, atol=1e-7)


def test_fused_relu_becomes_none_and_the_lint_warning_goes():
    graph = load_graph_text(FUSED, "fused.yaml")
    assert any("ReLU on the final class scores" in d.message for d in specc.check(graph).warnings)
    result = specc.transform(graph, linear_scores=True)
    assert result.graph.node("scores").op.activation == "none"
    assert result.graph.node("c1").op.activation == "relu"  # hidden layers keep theirs
    assert not any("ReLU on the final class scores" in d.message for d in specc.check(result.graph).warnings)
    # The same seed draws the same initial network (He's rule has no slope to lose).
    before, after = build(graph, seed=5).state_dict(), build(result.graph, seed=5).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_already_linear_scores_are_a_note_not_a_change():
    graph = load_graph_text(STANDALONE.replace("  - {name: clip, type: relu}\n", ""), "linear.yaml")
    result = specc.transform(graph, linear_scores=True)
    assert result.graph == graph
    assert any("already linear" in d.message for d in result.notes)
