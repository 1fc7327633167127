"""A class's map starts from 1 on its score (the paper's and Captum's convention), not from
the score's value: a class with a negative logit gets the gradient of its score, not its
negation, and a class whose score a final ReLU zeroed still gets a deconvnet map. Checked
against autograd on a hand-written copy of the network (plain torch, its own ReLU rules)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import specc
import specc_torch
from specc_explain_onnx import emit_explain
from specc_onnx import to_bytes
from specc_onnx.runtime import make_session
from specc_torch.weights import state_dict_numpy
from specc_viz import explain

SPEC = """
name: scores
input: {channels: 2, size: 5}
classes: 3
layers:
  - {name: c1, type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {name: gap, type: global_avg_pool}
  - {name: fc, type: linear, units: 3}
"""


class _Guided(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0) * (g > 0)


class _Deconv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


RELUS = {"backprop": torch.relu, "guided": _Guided.apply, "deconvnet": _Deconv.apply}


def reference(model, x: torch.Tensor, k: int, method: str, final_relu: bool = False) -> torch.Tensor:
    """d score_k / d x through a plain copy of the network, with `method`'s ReLU backward."""
    relu = RELUS[method]
    x = x.clone().requires_grad_(True)
    conv, fc = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4, 3)
    conv.load_state_dict(model.c1.state_dict())
    fc.load_state_dict(model.fc.state_dict())
    scores = fc(relu(conv(x)).mean(dim=(2, 3)))
    if final_relu:
        scores = relu(scores)
    (grad,) = torch.autograd.grad(scores[:, k].sum(), x)
    return grad


@pytest.fixture(scope="module")
def net():
    graph = specc.load(SPEC)
    model = specc_torch.build(graph, seed=1).eval()
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([-5.0, 0.0, 5.0]))  # class 0 scores negative
    return graph, model


@pytest.mark.parametrize("method", ["backprop", "guided", "deconvnet"])
def test_negative_class_map_is_the_gradient_of_its_score(net, method):
    graph, model = net
    x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(x)[:, 0] < 0).all()
    want = reference(model, x, 0, method)
    assert float(want.abs().sum()) > 0
    got = explain(model, x, units=0, method=method)  # the logits: a class
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got_autograd = explain(model, x, units=0, method=method, engine="autograd")
    torch.testing.assert_close(got_autograd, want, rtol=1e-5, atol=1e-6)
    onnx_model = emit_explain(graph, state_dict_numpy(model), method=method, layer="fc", unit=0)
    session = make_session(to_bytes(onnx_model), ["CPUExecutionProvider"])
    np.testing.assert_allclose(
        session.run(["reconstruction"], {"input": x.numpy()})[0], want.numpy(), rtol=1e-4, atol=1e-6
    )


def test_activation_seed_stays_available_for_classes(net):
    graph, model = net
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        score = model(x)[0, 0]
    scaled = explain(model, x, units=0, method="backprop", seed="activation")
    torch.testing.assert_close(scaled, score * reference(model, x, 0, "backprop"), rtol=1e-5, atol=1e-6)
    onnx_model = emit_explain(graph, state_dict_numpy(model), method="backprop", layer="fc", unit=0, seed="activation")
    session = make_session(to_bytes(onnx_model), ["CPUExecutionProvider"])
    np.testing.assert_allclose(
        session.run(["reconstruction"], {"input": x.numpy()})[0], scaled.numpy(), rtol=1e-4, atol=1e-6
    )


def test_dead_class_still_has_a_deconvnet_map():
    """ReLU on the class scores (the paper's nets): a class scored 0 has a deconvnet map, as
    Captum's Deconvolution gives, because the deconvnet rule ignores the forward mask."""
    graph = specc.load(SPEC.replace("units: 3}", "units: 3, activation: relu}"))
    model = specc_torch.build(graph, seed=1).eval()
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([-50.0, 0.0, 5.0]))
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model(x)[0, 0] == 0  # dead
    want = reference(model, x, 0, "deconvnet", final_relu=True)
    got = explain(model, x, units=0, method="deconvnet")
    assert float(got.abs().sum()) > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
