"""The backward of the pooling and normalisation layers (issue #11): the replayed definitions
(specc.backward_pooling / backward_norm on tensors) equal autograd under every method's rules,
and the ONNX explain model (the same definitions as nodes) equals both, on the forms the
op-table example does not cover; and the generic builder primitives agree between engines.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from test_pooling_norm import net, ort, randomised

from specc_explain_onnx import check_explain_model, emit_explain
from specc_explain_onnx.grad import OnnxGrad
from specc_torch.weights import state_dict_numpy
from specc_viz import METHODS, explain
from specc_viz.replay import TorchGrad

# -- backward: replay == autograd == ONNX explain -------------------------------------------
BACKWARD_CASES = [
    ("type: adaptive_avg_pool, output: 7", 2, "leaky_relu"),  # 2 -> 7: windows repeat
    ("type: adaptive_avg_pool, output: 3", 6, "leaky_relu"),  # uniform: AveragePool forward
    ("type: adaptive_max_pool, output: 3", 5, "leaky_relu"),
    ("type: adaptive_max_pool, output: 2", 4, "relu"),  # ReLU zeros: tied maxima, first one wins
    ("type: lp_pool, p: max, kernel: 3, stride: 2, ceil_mode: true", 6, "leaky_relu"),
    ("type: lp_pool, p: 2.5, kernel: [2, 3], stride: 1", 5, "relu"),  # windows of zeros send nothing
    ("type: lp_pool, p: 1, kernel: 2", 5, "leaky_relu"),
    ("type: global_max_pool", 4, "relu"),
    ("type: local_response_norm, size: 4, alpha: 0.3, beta: 0.6, k: 2", 4, "leaky_relu"),
    ("type: group_norm, groups: 4, affine: false, eps: 0.01", 4, "leaky_relu"),
    ("type: layer_norm, affine: false", 4, "leaky_relu"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("layer", "size", "act"), BACKWARD_CASES)
def test_backward_engines_agree(layer, size, act, method):
    graph = net(layer, size=size, act=act)
    model = randomised(graph)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    replayed = explain(model, x, layer="fc", units=[1], method=method, engine="replay")
    autograd = explain(model, x, layer="fc", units=[1], method=method, engine="autograd")
    scale = float(autograd.abs().max())
    assert scale > 0
    torch.testing.assert_close(replayed, autograd, rtol=1e-5, atol=1e-6 * scale)
    for opset in (16, 18):
        proto = emit_explain(graph, state_dict_numpy(model), method=method, layer="fc", unit=1, opset=opset)
        check_explain_model(proto, graph)
        got = ort(proto, {"input": x.numpy()}, "reconstruction")
        np.testing.assert_allclose(got, replayed[:, 0].numpy(), rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("layer", ["type: group_norm, groups: 2", "type: layer_norm"])
def test_flat_norm_backward(layer):
    graph = net(layer, flat=True, size=2)
    model = randomised(graph)
    x = torch.randn(2, 3, 2, 2)
    replayed = explain(model, x, layer="fc", units=[0], method="backprop", engine="replay")
    torch.testing.assert_close(replayed, explain(model, x, layer="fc", units=[0], method="backprop", engine="autograd"))


@pytest.mark.parametrize("opset", [16, 18])
def test_builder_primitives_agree(opset):
    """The generic primitives, torch against ONNX, on a (2, 3, 4) value."""
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(4)) - 0.2
    x[1, 2, :2] = 0.5  # a tie in the first window: the switch is its first position
    g = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(5))
    torch_b = TorchGrad(SimpleNamespace(steps=()), {"x": x}, torch.arange(2), "backprop")
    onnx_b = OnnxGrad("backprop", {"x": "x"}, {"x": (3, 4)}, set(), opset=opset)
    for name, call in {
        "mean": lambda b, v, _: b.reduce_mean(v, (1, 2), "mean"),
        "sum": lambda b, v, _: b.reduce_sum(v, (2,), "sum"),
        "pow": lambda b, v, _: b.pow(b.mul(v, v, "sq"), 1.5, "pow"),
        "sign": lambda b, v, _: b.sign(v, "sign"),
        "unpool": lambda b, _, s: b.unpool_windows(s, "x", [[0, 1], [1, 2, 3]], "up"),
        "unpool_abs": lambda b, _, s: b.unpool_windows(s, "x", [[0, 1], [1, 2, 3]], "up", magnitude=True),
    }.items():
        want = call(torch_b, x, g)
        onnx_b.nodes.clear()
        onnx_b.initializers.clear()
        onnx_b.existing.clear()
        out = call(onnx_b, "x", "g")
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(t.shape)) for n, t in (("x", x), ("g", g))]
        graph = helper.make_graph(
            list(onnx_b.nodes),
            name,
            inputs,
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
            initializer=list(onnx_b.initializers),
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        feeds = {"x": x.numpy(), "g": g.numpy()}
        got = ort(proto, feeds, out)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
