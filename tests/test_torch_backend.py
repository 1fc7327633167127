"""The PyTorch backend on small networks: op coverage, seeding, initialisation, the ReLU seam,
named intermediate outputs, output modes, devices/memory formats, layer-name clashes."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import specc
import specc_torch
from specc import build
from specc.errors import SpecError
from specc.ops import OPS
from specc_torch import TORCH_OPS

ROOT = Path(__file__).resolve().parents[1]
ALLCNN_C = ROOT / "specs" / "allcnn_c.yaml"

# Every kind of ReLU site: fused relu and leaky_relu on conv and linear, standalone layers.
MIXED = """
name: mixed
input: {channels: 3, size: 8}
classes: 5
layers:
  - {name: c1, type: conv, filters: 6, kernel: 3, padding: same, activation: relu}
  - {name: r1, type: relu}
  - {name: c2, type: conv, filters: 6, kernel: 3, padding: same, activation: leaky_relu, slope: 0.2}
  - {name: l1, type: leaky_relu, slope: 0.1}
  - {name: bn, type: batch_norm}
  - {name: pool, type: max_pool, kernel: 2}
  - {name: flat, type: flatten}
  - {name: fc1, type: linear, units: 16, activation: relu}
  - {name: fc2, type: linear, units: 8, activation: leaky_relu, slope: 0.3}
  - {name: fc3, type: linear, units: 5}
  - {name: prob, type: softmax}
"""


def _spec(init: str, extra: str = "") -> str:
    return f"""
name: init_{init}
input: {{channels: 64, size: 4}}
classes: 10
layers:
  - {{name: big, type: conv, filters: 256, kernel: 3, padding: same, init: {init}{extra}}}
  - {{name: gap, type: global_avg_pool}}
  - {{name: fc, type: linear, units: 10, init: {init}{extra}}}
"""


def test_op_table_covers_every_op_exactly():
    assert set(TORCH_OPS) == set(OPS)


# -- seeding --------------------------------------------------------------------------------
def test_same_seed_same_weights_other_seed_different_and_global_rng_untouched():
    rng = torch.get_rng_state()
    a, b, c = build(ALLCNN_C, seed=0), build(ALLCNN_C, seed=0), build(ALLCNN_C, seed=1)
    assert torch.equal(torch.get_rng_state(), rng)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])
    d, e = build(ALLCNN_C, seed=None), build(ALLCNN_C, seed=None)
    assert not torch.equal(d.conv1.weight, e.conv1.weight)


def test_seed_zero_gives_these_exact_weights_on_every_machine():
    # Drawn in float64 then rounded, so no CPU-specific float32 kernel is involved (the same
    # bits were measured under ATEN_CPU_CAPABILITY=default, avx2 and avx512).
    model = build(ALLCNN_C, seed=0)
    assert model.conv1.weight.flatten()[:3].tolist() == [
        -0.6288144588470459,
        -0.10158601403236389,
        -0.28871771693229675,
    ]
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()
    assert digest[:16] == "5be19df144b79f7d"


# -- initialisation -------------------------------------------------------------------------
def _fan_in(module) -> int:
    return module.weight[0].numel()


def test_he_init_std_and_zero_biases():
    model = build(_spec("he"), seed=0)
    std = model.big.weight.std().item()
    assert std == pytest.approx(math.sqrt(2 / _fan_in(model.big)), rel=0.05)
    assert model.big.weight.mean().abs().item() < 0.01 * std
    assert not model.big.bias.any() and not model.fc.bias.any()


def test_he_init_uses_the_leaky_slope():
    model = build(_spec("he", ", activation: leaky_relu, slope: 0.5"), seed=0)
    want = math.sqrt(2 / ((1 + 0.5**2) * _fan_in(model.big)))
    assert model.big.weight.std().item() == pytest.approx(want, rel=0.05)


def test_xavier_init_is_glorot_uniform():
    model = build(_spec("xavier"), seed=0)
    w = model.big.weight
    bound = math.sqrt(6 / (_fan_in(model.big) + w.shape[0] * 9))
    assert w.abs().max().item() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert not model.big.bias.any()


def test_gaussian_init_uses_init_std():
    model = build(_spec("gaussian", ", init_std: 0.03"), seed=0)
    assert model.big.weight.std().item() == pytest.approx(0.03, rel=0.05)
    assert not model.big.bias.any()


def test_torch_init_is_pytorchs_default_uniform():
    model = build(_spec("torch"), seed=0)
    bound = 1 / math.sqrt(_fan_in(model.big))
    for t in (model.big.weight, model.big.bias):
        assert t.abs().max().item() <= bound
    assert model.big.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert model.big.bias.abs().min().item() > 0


def test_batch_norm_starts_as_identity():
    bn = build(MIXED).bn
    assert torch.equal(bn.weight, torch.ones(6)) and not bn.bias.any()
    assert torch.equal(bn.running_var, torch.ones(6)) and not bn.running_mean.any()


# -- the ReLU seam --------------------------------------------------------------------------
def test_every_relu_site_goes_through_the_rules():
    model = build(MIXED).eval()
    calls = {"relu": 0, "leaky": []}

    def relu(x):
        calls["relu"] += 1
        return torch.relu(x)

    def leaky(x, slope):
        calls["leaky"].append(slope)
        return F.leaky_relu(x, slope)

    with model.activation_rules(relu=relu, leaky_relu=leaky):
        model(torch.randn(2, 3, 8, 8))
    assert calls == {"relu": 3, "leaky": [0.2, 0.1, 0.3]}  # c1, r1, fc1; c2, l1, fc2


def test_swapping_a_rule_changes_the_output_and_restoring_restores_it_exactly():
    model = build(MIXED).eval()
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    with model.activation_rules(relu=torch.abs, leaky_relu=lambda x, slope: x):
        assert not torch.allclose(model(x), before)
    assert torch.equal(model(x), before)
    model.set_activation_rules(relu=torch.abs)
    assert not torch.equal(model(x), before)
    model.reset_activation_rules()
    assert torch.equal(model(x), before)


def test_the_in_place_default_gives_the_same_values_and_gradients_as_an_out_of_place_rule():
    model = build(MIXED, output="probs")
    x = torch.randn(4, 3, 8, 8)

    def run() -> list[torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(0)
        out, acts = model(x, capture={"c1", "c2", "fc1"})
        (out[:, 1].sum() + acts["c1"].mean()).backward()
        return [out, *acts.values()] + [p.grad for p in model.parameters()]

    default = run()
    out_of_place = {"relu": lambda t: F.relu(t), "leaky_relu": lambda t, slope: F.leaky_relu(t, slope)}
    with model.activation_rules(**out_of_place):
        other = run()
    assert all(torch.equal(a, b) for a, b in zip(default, other))


class _PositiveGradReLU(torch.autograd.Function):
    """ReLU forward, and only positive gradients pass backward (the guided-backprop shape)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * (grad > 0)


def test_a_custom_backward_rule_reaches_the_input_gradient():
    model = build(ALLCNN_C).eval()

    def input_grad() -> torch.Tensor:
        x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3), requires_grad=True)
        model(x)[0, 3].backward()
        return x.grad

    plain = input_grad()
    with model.activation_rules(relu=_PositiveGradReLU.apply):
        guided = input_grad()
    assert not torch.allclose(plain, guided)
    assert torch.equal(input_grad(), plain)


# -- named intermediate outputs -------------------------------------------------------------
def test_capture_and_stop_at():
    model = build(ALLCNN_C).eval()
    x = torch.randn(2, 3, 32, 32)
    out, acts = model(x, capture={"conv3", "conv6"})
    assert torch.equal(out, model(x))
    assert acts["conv3"].shape == (2, 96, 16, 16) and acts["conv6"].shape == (2, 192, 8, 8)
    calls = []
    with model.activation_rules(relu=lambda t: calls.append(1) or torch.relu(t)):
        conv3 = model.layer_output(x, "conv3")
    assert len(calls) == 3 and torch.equal(conv3, acts["conv3"])
    out2, acts2 = model.forward_with_activations(x, ["conv3"])
    assert torch.equal(out2, out) and torch.equal(acts2["conv3"], acts["conv3"])


def test_a_backward_pass_can_start_from_a_captured_layer():
    model = build(ALLCNN_C).eval()
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    _, acts = model(x, capture={"conv6"})
    acts["conv6"][0, 5].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_capture_names_are_refused():
    model = build(ALLCNN_C)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="no layer 'conv66' in spec 'allcnn_c' — did you mean 'conv6'"):
        model(x, capture={"conv66"})
    with pytest.raises(ValueError, match="layer 'conv7' comes after stop_at='conv3'"):
        model(x, capture={"conv7"}, stop_at="conv3")
    with pytest.raises(ValueError, match="not run with output='logits'"):
        model(x, capture={"softmax1"})


# -- outputs, devices, names ----------------------------------------------------------------
def test_logits_drop_the_trailing_softmax_and_probs_keep_it():
    logits_model, probs_model = build(MIXED).eval(), build(MIXED, output="probs").eval()
    x = torch.randn(2, 3, 8, 8)
    logits, probs = logits_model(x), probs_model(x)
    assert torch.equal(probs, torch.softmax(logits, dim=1))
    assert logits_model.output_name == "fc3" and probs_model.output_name == "prob"
    with pytest.raises(ValueError, match="output='scores'"):
        build(MIXED, output="scores")


def test_attributes():
    model = build(ALLCNN_C, overrides=["classes=100", "labels=null", "layers.conv9.filters=100"])
    assert model.graph.classes == 100 and model.shapes["conv9"] == (100, 6, 6)
    assert model.layer_names[:3] == ("drop1", "conv1", "conv2") and model.layer_names[-1] == "softmax1"
    assert model.shapes["gap1"] == (100,)


def test_channels_last_gives_the_same_outputs_and_trains():
    model = build(ALLCNN_C).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    model = model.to("cpu", memory_format=torch.channels_last)
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model(x.to(memory_format=torch.channels_last)), expected, atol=1e-5)
    model.train()
    loss = F.cross_entropy(model(x.to(memory_format=torch.channels_last)), torch.tensor([1, 2]))
    loss.backward()
    assert model.conv1.weight.grad is not None


@pytest.mark.parametrize("name", ["forward", "training", "graph", "class"])
def test_a_layer_name_that_would_shadow_a_module_attribute_is_a_located_error(name):
    text = f"""name: clash
input: {{channels: 1, size: 4}}
classes: 2
layers:
  - {{name: {name}, type: conv, filters: 2, kernel: 4}}
  - {{type: flatten}}
"""
    # refused by the spec check already (specc.reserved), so `specc check` and `build` agree
    with pytest.raises(SpecError, match=rf"<string>:5:\d+: layers\[0\] \({name}\): layer name '{name}' is reserved"):
        build(text)


def test_the_backend_builds_a_graph_and_the_api_builds_a_spec():
    """Backends take a Graph (layering: they never import the API); `specc.build` loads first."""
    graph = specc.load(ALLCNN_C)
    from_graph, from_path = specc_torch.build(graph, seed=4), specc.build(ALLCNN_C, seed=4)
    assert from_graph.graph == from_path.graph
    assert all(torch.equal(a, b) for a, b in zip(from_graph.state_dict().values(), from_path.state_dict().values()))
    with pytest.raises(TypeError, match=r"takes a Graph, not str: use specc.build\(spec\)"):
        specc_torch.build(str(ALLCNN_C))


def test_the_cores_reserved_names_cover_what_the_pytorch_module_has():
    """`specc check` refuses layer names that `specc_torch.build` could not make attributes."""
    import keyword

    from specc.reserved import RESERVED_NAMES
    from specc_torch.module import SpeccModule, _reserved_names

    torch_side = set(_reserved_names()) | {n for n in dir(SpeccModule) if not n.startswith("__")}
    assert torch_side | set(keyword.kwlist) <= RESERVED_NAMES
