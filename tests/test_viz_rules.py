"""The three backward rules: hand-computed 4x4 cases, an independent computation on a small
network (explicit masks, switches and transposed convolutions), where the rules must differ,
and the pass covering every ReLU site."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import specc
from specc_viz import LEAKY_FUNCTIONS, METHODS, RELU_FUNCTIONS, backward_rules, explain
from specc_viz.units import Position

X = torch.tensor([[1.0, -1, 2, -2], [-3, 3, -4, 4], [0.5, -0.5, 0, 1], [2, -2, -1, 3]])
G = torch.tensor([[1.0, 1, -1, -1], [2, -2, 2, -2], [-3, 3, -3, 3], [1, -1, 1, -1]])

# What each rule sends below a ReLU for input X and upstream signal G, worked out by hand.
RELU_EXPECTED = {
    "backprop": [[1, 0, -1, 0], [0, -2, 0, -2], [-3, 0, 0, 3], [1, 0, 0, -1]],  # G * (X > 0)
    "deconvnet": [[1, 1, 0, 0], [2, 0, 2, 0], [0, 3, 0, 3], [1, 0, 1, 0]],  # G * (G > 0)
    "guided": [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 3], [1, 0, 0, 0]],  # G * (X > 0) * (G > 0)
}
# The same for a leaky ReLU of slope 0.1 (x = 0 takes the slope, as for ReLU it takes 0).
LEAKY_EXPECTED = {
    "backprop": [[1, 0.1, -1, -0.1], [0.2, -2, 0.2, -2], [-3, 0.3, -0.3, 3], [1, -0.1, 0.1, -1]],
    "deconvnet": [[1, 1, -0.1, -0.1], [2, -0.2, 2, -0.2], [-0.3, 3, -0.3, 3], [1, -0.1, 1, -0.1]],
    "guided": [[1, 0.1, 0, 0], [0.2, 0, 0.2, 0], [0, 0.3, 0, 3], [1, 0, 0.1, 0]],
}


@pytest.mark.parametrize("method", METHODS)
def test_relu_rules_on_a_hand_computed_4x4_case(method):
    x = X.clone().requires_grad_(True)
    y = RELU_FUNCTIONS[method].apply(x)
    assert torch.equal(y, F.relu(X))  # the forward pass is never changed
    (grad,) = torch.autograd.grad(y, x, G)
    assert torch.equal(grad, torch.tensor(RELU_EXPECTED[method]))


@pytest.mark.parametrize("method", METHODS)
def test_leaky_rules_on_a_hand_computed_4x4_case(method):
    x = X.clone().requires_grad_(True)
    y = LEAKY_FUNCTIONS[method].apply(x, 0.1)
    assert torch.equal(y, F.leaky_relu(X, 0.1))
    (grad,) = torch.autograd.grad(y, x, G)
    torch.testing.assert_close(grad, torch.tensor(LEAKY_EXPECTED[method]), rtol=0, atol=1e-7)


HAND_NET = """
name: hand
input: {channels: 1, size: 4}
classes: 1
layers:
  - {name: c1, type: conv, filters: 2, kernel: 2, stride: 2, bias: false, activation: relu}
  - {name: c2, type: conv, filters: 1, kernel: 1, bias: false}
  - {name: gap, type: global_avg_pool}
"""
HAND_INPUT = [[3, 2, 0, -1], [0, 1, 3, 1], [-2, 1, 1, 1], [1, -1, 0, 2]]
FILTER_A, FILTER_B = [[1, -1], [1, 1]], [[0, 1], [-1, 1]]
# c1 pre-activations: A -> [[2, 5], [-3, 2]], B -> [[3, -3], [-1, 3]]. Seeding 1 on all of c2
# sends +1 to channel A and -1 to channel B; below c1's ReLU:
#   backprop keeps both where c1 fired; deconvnet keeps the positive signal (A) everywhere,
#   even where A did not fire; guided keeps A where it fired. The transposed 2x2/2 conv then
#   pastes A or A - B into each 2x2 block.
HAND_EXPECTED = {
    "backprop": [[1, -2, 1, -1], [2, 0, 1, 1], [0, 0, 1, -2], [0, 0, 2, 0]],
    "deconvnet": [[1, -1, 1, -1], [1, 1, 1, 1], [1, -1, 1, -1], [1, 1, 1, 1]],
    "guided": [[1, -1, 1, -1], [1, 1, 1, 1], [0, 0, 1, -1], [0, 0, 1, 1]],
}


def hand_model():
    model = specc.build(HAND_NET)
    model.load_state_dict(
        {
            "c1.weight": torch.tensor([[FILTER_A], [FILTER_B]], dtype=torch.float32),
            "c2.weight": torch.tensor([[[[1.0]], [[-1.0]]]]),
        }
    )
    return model


@pytest.mark.parametrize("engine", ["replay", "autograd"])
@pytest.mark.parametrize("method", METHODS)
def test_rules_through_a_hand_computed_4x4_network(method, engine):
    x = torch.tensor([[HAND_INPUT]], dtype=torch.float32)
    got = explain(hand_model(), x, layer="c2", units=0, method=method, seed="one", engine=engine)
    assert torch.equal(got[0, 0], torch.tensor(HAND_EXPECTED[method], dtype=torch.float32))
    # From the class instead: global averaging spreads the seed over the 4 positions.
    cls = explain(hand_model(), x, units=0, method=method, seed="one", engine=engine)
    assert torch.equal(cls[0, 0], torch.tensor(HAND_EXPECTED[method], dtype=torch.float32) / 4)


# -- an independent computation on a 3-layer network with max-pooling and a strided conv ----
SMALL = """
name: small
input: {channels: 2, size: 9}
classes: 3
layers:
  - {name: c1, type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {name: pool, type: max_pool, kernel: 3, stride: 2, padding: 1}
  - {name: c2, type: conv, filters: 5, kernel: 3, stride: 2, padding: 1, activation: relu}
  - {name: gap, type: global_avg_pool}
  - {name: fc, type: linear, units: 3}
"""


def reference_map(w1, w2, x, unit: Position, method: str) -> np.ndarray:
    """The map written out without autograd or specc: explicit ReLU masks, switches found by
    scanning each pooling window (first maximum wins), transposed convolutions."""
    z1 = F.conv2d(x, w1, padding=1)
    y1 = z1.clamp_min(0)
    n, c, h, w = y1.shape
    padded = F.pad(y1, (1, 1, 1, 1), value=-np.inf).numpy()
    pooled = np.zeros((n, c, 5, 5), dtype=np.float32)
    switch = {}
    for ch in range(c):
        for i in range(5):
            for j in range(5):
                window = padded[0, ch, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
                a, b = np.unravel_index(np.argmax(window), window.shape)
                pooled[0, ch, i, j] = window[a, b]
                switch[ch, i, j] = (2 * i + a - 1, 2 * j + b - 1)
    z2 = F.conv2d(torch.from_numpy(pooled), w2, stride=2, padding=1)
    y2 = z2.clamp_min(0)

    def rule(g, y):
        alive, positive = (y > 0).float(), (g > 0).float()
        return {"backprop": g * alive, "deconvnet": g * positive, "guided": g * alive * positive}[method]

    g2 = torch.zeros_like(y2)
    g2[0, unit.channel, unit.y, unit.x] = y2[0, unit.channel, unit.y, unit.x]  # the unit's activation
    g_pool = F.conv_transpose2d(rule(g2, y2), w2, stride=2, padding=1)  # 3x3 -> 5x5: no output padding
    g1 = torch.zeros_like(y1)
    for (ch, i, j), (a, b) in switch.items():
        g1[0, ch, a, b] += g_pool[0, ch, i, j]
    return F.conv_transpose2d(rule(g1, y1), w1, padding=1)[0].numpy()


@pytest.mark.parametrize("method", METHODS)
def test_each_rule_matches_an_independent_computation(method):
    model = specc.build(SMALL, seed=3)
    x = torch.randn(1, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    _, acts = model(x, capture={"c2"})
    unit = Position(*[int(v) for v in np.unravel_index(int(acts["c2"][0].argmax()), (5, 3, 3))])
    expected = reference_map(model.c1.weight.detach(), model.c2.weight.detach(), x, unit, method)
    assert np.abs(expected).max() > 0
    for engine in ("replay", "autograd"):
        got = explain(model, x, layer="c2", units=unit, method=method, engine=engine)[0].numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_rules_differ_where_they_must():
    g, y = torch.randn(1000), torch.randn(1000)
    relu = {m: RELU_FUNCTIONS[m] for m in METHODS}

    def through(method, x, signal):
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(relu[method].apply(x), x, signal)[0]

    # guided is backprop masked by a positive upstream signal
    assert torch.equal(through("guided", y, g), through("backprop", y, g) * (g > 0))
    # the deconvnet ignores the forward mask entirely; backprop does not
    assert torch.equal(through("deconvnet", y, g), through("deconvnet", -y, g))
    assert not torch.equal(through("backprop", y, g), through("backprop", -y, g))
    # on a network: a pool-free deconvnet map from a fixed seed does not depend on the image
    model = specc.build(SMALL.replace("max_pool", "avg_pool"), seed=1)
    a, b = torch.randn(2, 1, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    deconv = [explain(model, v, layer="c2", units="1,1,1", method="deconvnet", seed="one") for v in (a, b)]
    assert torch.equal(deconv[0], deconv[1])
    maps = {m: explain(model, a, layer="c2", units="1,1,1", method=m, seed="one") for m in METHODS}
    assert not torch.allclose(maps["guided"], maps["backprop"]) and not torch.allclose(
        maps["guided"], maps["deconvnet"]
    )


def test_the_pass_reaches_every_relu_site():
    spec = """
name: sites
input: {channels: 1, size: 6}
classes: 2
layers:
  - {name: c1, type: conv, filters: 2, kernel: 3, padding: same, activation: relu}
  - {name: r1, type: relu}
  - {name: c2, type: conv, filters: 2, kernel: 3, activation: leaky_relu, slope: 0.2}
  - {name: l1, type: leaky_relu, slope: 0.3}
  - {name: flat, type: flatten}
  - {name: fc, type: linear, units: 2, activation: relu}
"""
    model = specc.build(spec)
    calls = []
    with backward_rules(model, "guided"):
        relu, leaky = model.relu_rule, model.leaky_rule
        model.relu_rule = lambda x: calls.append("relu") or relu(x)
        model.leaky_rule = lambda x, s: calls.append(f"leaky {s}") or leaky(x, s)
        out = model(torch.randn(1, 1, 6, 6, requires_grad=True))
        assert "GuidedReLU" in out.grad_fn.name()
    assert calls == ["relu", "relu", "leaky 0.2", "leaky 0.3", "relu"]
