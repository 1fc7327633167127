"""`explain`: the model restored exactly, training unaffected, batched equal to one at a
time, both engines equal on every layer type, the generated standalone code covered."""

from __future__ import annotations

import copy

import pytest
import torch

import specc
from specc_torch.codegen import generate
from specc_torch.table import default_leaky_rule, default_relu_rule
from specc_viz import METHODS, backward_rules, explain
from specc_viz.units import Channel, Position

TINY = """
name: tiny
input: {channels: 3, size: 8}
classes: 4
layers:
  - {type: dropout, rate: 0.3}
  - {name: c1, type: conv, filters: 6, kernel: 3, padding: same, activation: relu}
  - {name: bn, type: batch_norm}
  - {name: pool, type: max_pool, kernel: 3, stride: 2, padding: 1}
  - {name: c2, type: conv, filters: 8, kernel: 3, stride: 2, padding: same, activation: relu}
  - {name: gap, type: global_avg_pool}
  - {name: fc, type: linear, units: 4}
  - {type: softmax}
"""

# Every layer type the backward replay handles, on branches that fan out and merge again.
EVERY_OP = """
name: every_op
input: {channels: 2, size: 9}
classes: 3
layers:
  - {name: c1, type: conv, filters: 4, kernel: 3, padding: same, activation: leaky_relu, slope: 0.1}
  - {name: avg, type: avg_pool, kernel: 3, stride: 2, padding: 1, ceil_mode: true}
  - {name: lr, type: leaky_relu, slope: 0.2, inputs: avg}
  - {name: r, type: relu, inputs: avg}
  - {name: sum, type: add, inputs: [lr, r]}
  - {name: both, type: concat, inputs: [sum, avg]}
  - {name: bn, type: batch_norm}
  - {name: c2, type: conv, filters: 4, kernel: 2, dilation: 2, groups: 2, activation: relu}
  - {name: soft, type: softmax}
  - {name: flat, type: flatten}
  - {name: fc1, type: linear, units: 6, activation: relu}
  - {name: fc2, type: linear, units: 3}
"""


def randomise_bn(model):
    # A private generator: drawn from the global RNG, the statistics (and so whether a unit is
    # dead) depended on which tests ran before.
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.5, 0.5, generator=g)
    return model


@pytest.mark.parametrize("method", METHODS)
def test_engines_agree_on_every_layer_type(method):
    model = randomise_bn(specc.build(EVERY_OP, seed=2))
    x = torch.randn(2, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    for layer, units in (("c2", [0, "3,1,1"]), ("fc1", [1, 4]), (None, [0, 2])):
        replay = explain(model, x, layer=layer, units=units, method=method, engine="replay")
        autograd = explain(model, x, layer=layer, units=units, method=method, engine="autograd")
        assert replay.shape == (2, 2, 2, 9, 9) and replay.abs().max() > 0
        torch.testing.assert_close(replay, autograd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("engine", ["replay", "autograd"])
def test_batched_equals_one_at_a_time(engine):
    model = randomise_bn(specc.build(TINY, seed=1))
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    units = [Channel(0), Channel(5), Position(7, 1, 1), Position(2, 0, 1)]
    batched = explain(model, x, layer="c2", units=units, method="guided", engine=engine, max_rows=5, batch_size=2)
    for b in range(3):
        for u, unit in enumerate(units):
            alone = explain(model, x[b : b + 1], layer="c2", units=unit, method="guided", engine=engine)
            torch.testing.assert_close(batched[b, u], alone[0], rtol=1e-5, atol=1e-6)


def test_model_is_restored_exactly():
    model = randomise_bn(specc.build(TINY, seed=0))
    model.train()
    model.c1.eval()  # an unusual mixed state must survive as well
    model.fc.weight.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    x = torch.randn(2, 3, 8, 8)
    for engine in ("replay", "autograd"):
        for method in METHODS:
            explain(model, x, layer="c2", units=[0, 1], method=method, engine=engine)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics did not move
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert "relu_rule" not in model.__dict__ and "leaky_rule" not in model.__dict__
    assert model.relu_rule is default_relu_rule and model.leaky_rule is default_leaky_rule


def test_the_pass_restores_on_error_and_keeps_an_override():
    model = specc.build(TINY)

    def mine(x):
        return torch.relu(x)

    model.relu_rule = mine  # a rule someone set before: it comes back, not the default
    with pytest.raises(RuntimeError, match="boom"), backward_rules(model, "deconvnet"):
        assert model.relu_rule is not mine
        raise RuntimeError("boom")
    assert model.relu_rule is mine and model.leaky_rule is default_leaky_rule


def test_a_training_step_after_explain_is_the_same_as_without():
    def step(model, do_explain: bool):
        gen = torch.Generator().manual_seed(5)
        x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 4, (4,), generator=gen)
        if do_explain:
            for engine in ("replay", "autograd"):
                explain(model, x, layer="c2", units=[0, 3], method="guided", engine=engine)
                explain(model, x, units=[1], method="deconvnet", engine=engine)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        torch.manual_seed(0)  # the same dropout mask both times
        loss = torch.nn.functional.cross_entropy(model.train()(x), y)
        loss.backward()
        opt.step()
        return loss.detach(), model.state_dict()

    loss_a, state_a = step(specc.build(TINY, seed=4), False)
    loss_b, state_b = step(specc.build(TINY, seed=4), True)
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_generated_standalone_code_has_the_same_maps():
    model = randomise_bn(specc.build(TINY, seed=6))
    namespace: dict = {}
    exec(compile(generate(model.graph), "<generated>", "exec"), namespace)
    standalone = namespace["Tiny"]()
    standalone.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    maps = {}
    for method in METHODS:
        ours = explain(model, x, units=[0, 3], method=method)
        theirs = explain(standalone, x, units=[0, 3], method=method)  # autograd under the pass
        torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-6)
        maps[method] = theirs
    assert not torch.allclose(maps["guided"], maps["backprop"])  # the rule really was swapped
    assert type(standalone).relu_rule is not None and "relu_rule" not in standalone.__dict__


def test_public_api_and_errors():
    model = specc.build(TINY)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(specc.explain(model, x, layer="c2", units=[1]), explain(model, x, layer="c2", units=[1]))
    assert explain(model, x, layer="c2", units="1,0,0").shape == (1, 3, 8, 8)
    assert explain(model, x, layer="c2", units=[1, (2, 1, 1)]).shape == (1, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="has 8 channels"):
        explain(model, x, layer="c2", units=[8])
    with pytest.raises(ValueError, match="is 2x2"):
        explain(model, x, layer="c2", units=["0,2,0"])
    with pytest.raises(ValueError, match="method"):
        explain(model, x, layer="c2", units=[0], method="smoothgrad")
    with pytest.raises(ValueError, match="units"):
        explain(model, x, layer="c2")
