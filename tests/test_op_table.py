"""The op table is the single source of truth: every layer type is handled by every backend
(the PyTorch table, the ONNX table, the backward definitions), and what the op table declares
about a layer's state agrees with what torch.nn itself builds.

Each op has one small example network below, with the layer under test named `t`; the table
of examples must cover `OPS` exactly, so a new layer type cannot skip these checks. The
oracles are outside specc: torch.nn's own modules (state_dict shapes, parameter counts),
onnxruntime (the emitted model against the torch forward), autograd (the replayed backward
against autograd under the swapped ReLU rules), and each other (ONNX explain maps against the
torch maps).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import specc
import specc_torch
from specc.backward import BACKWARD, METHODS
from specc.ops import OPS
from specc_explain_onnx import emit_explain
from specc_onnx import OP_TABLE, emit, to_bytes
from specc_onnx.runtime import make_session
from specc_onnx.weights import weight_shapes
from specc_torch import TORCH_OPS
from specc_torch.weights import state_dict_numpy
from specc_viz import explain

CPU = ["CPUExecutionProvider"]  # parity is defined on the CPU provider
HEAD = "  - {type: flatten}\n  - {name: fc, type: linear, units: 3}\n"
C0 = "  - {name: c0, type: conv, filters: 4, kernel: 3, padding: same, activation: leaky_relu, slope: 0.2}\n"


def _fused(activation: str) -> str:
    """The first conv with a fused `activation` (a name or a mapping)."""
    return f"  - {{name: c0, type: conv, filters: 4, kernel: 3, padding: same, activation: {activation}}}\n"


# kind -> layers of a 3x6x6 network in which the layer under test is `t` (a head is appended).
EXAMPLES: dict[str, str] = {
    "conv": C0 + "  - {name: t, type: conv, filters: 6, kernel: [3, 2], stride: [2, 1], padding: 1, groups: 2}\n",
    "max_pool": C0 + "  - {name: t, type: max_pool, kernel: 3, stride: 2, padding: 1, ceil_mode: true}\n",
    "avg_pool": C0 + "  - {name: t, type: avg_pool, kernel: 3, stride: 2, padding: 1, ceil_mode: true}\n",
    "global_avg_pool": C0 + "  - {name: t, type: global_avg_pool}\n  - {name: fc, type: linear, units: 3}\n",
    "dropout": C0 + "  - {name: t, type: dropout, rate: 0.5}\n",
    "relu": "  - {name: c0, type: conv, filters: 4, kernel: 3, padding: same}\n  - {name: t, type: relu}\n",
    "leaky_relu": "  - {name: c0, type: conv, filters: 4, kernel: 3, padding: same}\n"
    "  - {name: t, type: leaky_relu, slope: 0.3}\n",
    "prelu": C0 + "  - {name: t, type: prelu, init_slope: 0.1}\n",
    "batch_norm": C0 + "  - {name: t, type: batch_norm, eps: 0.001}\n",
    "flatten": C0 + "  - {name: t, type: flatten}\n  - {name: fc, type: linear, units: 3}\n",
    "linear": C0 + "  - {type: flatten}\n  - {name: t, type: linear, units: 5, activation: relu}\n"
    "  - {name: fc, type: linear, units: 3}\n",
    "softmax": C0 + "  - {name: t, type: softmax}\n",
    "add": C0 + "  - {name: c1, type: conv, filters: 4, kernel: 1, inputs: input}\n"
    "  - {name: t, type: add, inputs: [c0, c1]}\n",
    "concat": C0 + "  - {name: c1, type: conv, filters: 2, kernel: 1, inputs: input}\n"
    "  - {name: t, type: concat, inputs: [c0, c1]}\n",
    # pooling and normalisation (tests/test_pooling_norm.py has the hand and torch.nn oracles)
    "adaptive_avg_pool": C0 + "  - {name: t, type: adaptive_avg_pool, output: [4, 5]}\n",  # uneven windows
    "adaptive_max_pool": C0 + "  - {name: t, type: adaptive_max_pool, output: [4, 5]}\n",
    "global_max_pool": C0 + "  - {name: t, type: global_max_pool}\n  - {name: fc, type: linear, units: 3}\n",
    "lp_pool": C0 + "  - {name: t, type: lp_pool, p: 2, kernel: 3, stride: 2, ceil_mode: true}\n",
    "local_response_norm": C0 + "  - {name: t, type: local_response_norm, size: 3, alpha: 0.5, k: 2}\n",
    "group_norm": C0 + "  - {name: t, type: group_norm, groups: 2, eps: 0.001}\n",
    # A channel's own activation as the seed lies almost in instance_norm's null space: the map
    # is eps / (var + eps) of its size, so a small eps leaves only rounding to compare.
    "instance_norm": C0 + "  - {name: t, type: instance_norm, affine: true, eps: 0.1}\n",
    "layer_norm": C0 + "  - {name: t, type: layer_norm, eps: 0.001}\n",
    # activations (tests/test_activations.py has the torch.nn oracles); the conv before each
    # fuses another activation, in the name or the mapping form, so fused steps are checked too
    "sigmoid": _fused("{type: elu, alpha: 0.5}") + "  - {name: t, type: sigmoid}\n",
    "tanh": _fused("gelu") + "  - {name: t, type: tanh}\n",
    "relu6": _fused("none") + "  - {name: t, type: relu6}\n",
    "hardtanh": _fused("{type: softplus, beta: 2, threshold: 1}")
    + "  - {name: t, type: hardtanh, min_val: -0.5, max_val: 1.5}\n",
    "elu": _fused("{type: hardtanh, min_val: -2, max_val: 2}") + "  - {name: t, type: elu, alpha: 0.7}\n",
    "selu": _fused("mish") + "  - {name: t, type: selu}\n",
    "gelu": _fused("silu") + "  - {name: t, type: gelu, approximate: tanh}\n",
    "silu": _fused("{type: gelu, approximate: tanh}")
    + "  - {name: t, type: silu}\n  - {type: flatten}\n"
    + "  - {type: linear, units: 5, activation: {type: softplus, beta: 0.5}}\n  - {name: fc, type: linear, units: 3}\n",
    "mish": _fused("hardswish") + "  - {name: t, type: mish}\n",
    "hardswish": _fused("relu6") + "  - {name: t, type: hardswish}\n",
    "hardsigmoid": _fused("tanh") + "  - {name: t, type: hardsigmoid}\n",
    "softplus": _fused("sigmoid")
    + "  - {name: t, type: softplus, beta: 2, threshold: 1}\n  - {type: flatten}\n"
    + "  - {type: linear, units: 5, activation: selu}\n  - {name: fc, type: linear, units: 3}\n",
    # structure ops (tests/test_structure_ops.py has the torch.nn and hand oracles)
    "conv_transpose": C0 + "  - {name: t, type: conv_transpose, filters: 6, kernel: 3, stride: 2, padding: 1,"
    " output_padding: 1, groups: 2, activation: relu}\n",
    "upsample": C0 + "  - {name: t, type: upsample, mode: bilinear, size: [9, 8]}\n",  # non-integer ratios
    "pad": C0 + "  - {name: t, type: pad, padding: [1, 2, 0, 3], mode: reflect}\n",
    "identity": C0 + "  - {name: t, type: identity}\n",
    "mul": C0 + "  - {type: global_avg_pool}\n  - {type: linear, units: 2, activation: relu}\n"  # squeeze-excitation
    "  - {type: linear, units: 4}\n  - {name: gate, type: sigmoid}\n  - {name: t, type: mul, inputs: [c0, gate]}\n",
    "scale": C0 + "  - {name: t, type: scale}\n",
    "maxout": C0 + "  - {name: t, type: maxout, pieces: 2}\n",
    "log_softmax": C0 + "  - {name: t, type: log_softmax}\n",
}
WITH_HEAD = {k for k in EXAMPLES if "name: fc" not in EXAMPLES[k]}


def example(kind: str) -> specc.Graph:
    layers = EXAMPLES[kind] + (HEAD if kind in WITH_HEAD else "")
    return specc.load(f"name: ex_{kind}\ninput: {{channels: 3, size: 6}}\nclasses: 3\nlayers:\n{layers}")


def randomised(graph) -> torch.nn.Module:
    """The built model with every parameter and statistic random (nothing at a default)."""
    model = specc_torch.build(graph, seed=3)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if key.endswith("running_var") else values - 0.3)
    return model.eval()


def test_examples_cover_the_op_table():
    assert set(EXAMPLES) == set(OPS)
    for kind in OPS:
        assert example(kind).node("t").type == kind


def test_every_backend_covers_every_op():
    assert set(TORCH_OPS) == set(OPS)
    assert set(OP_TABLE) == set(OPS)
    assert set(BACKWARD) == set(OPS)


@pytest.mark.parametrize("kind", sorted(OPS))
def test_declared_weights_are_what_torch_builds(kind):
    graph = example(kind)
    model = specc_torch.build(graph)
    report = specc.check(graph).report
    node = graph.node("t")
    declared = node.op.weights([report.shapes[s] for s in node.inputs])
    module = model._modules.get("t")
    built = (
        {} if module is None else {k: tuple(v.shape) for k, v in module.state_dict().items() if v.is_floating_point()}
    )
    assert declared == built
    params = 0 if module is None else sum(p.numel() for p in module.parameters())
    assert report.info("t").params == node.op.param_count([report.shapes[s] for s in node.inputs]) == params
    # and the ONNX side reads the same names and shapes
    expected = {f"t.{k}": v for k, v in declared.items()}
    assert {k: v for k, v in weight_shapes(graph).items() if k.startswith("t.")} == expected


@pytest.mark.parametrize("kind", sorted(OPS))
def test_onnx_matches_torch(kind):
    graph = example(kind)
    model = randomised(graph)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    for fold in (False, True):
        session = make_session(to_bytes(emit(graph, state_dict_numpy(model), fold_bn=fold)), CPU)
        got = session.run(None, {"input": x.numpy()})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", sorted(OPS))
def test_backward_engines_agree(kind, method):
    """The replay (specc.backward on tensors) equals autograd under the swapped ReLU rules, and
    the ONNX explain model (specc.backward as nodes) equals both, from the layer under test and
    from the logits."""
    graph = example(kind)
    model = randomised(graph)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    weights = state_dict_numpy(model)
    for layer in ("t", "fc"):
        replayed = explain(model, x, layer=layer, units=[1], method=method, engine="replay")
        autograd = explain(model, x, layer=layer, units=[1], method=method, engine="autograd")
        torch.testing.assert_close(replayed, autograd, rtol=1e-5, atol=1e-6)
        onnx_model = emit_explain(graph, weights, method=method, layer=layer, unit=1)
        session = make_session(to_bytes(onnx_model), CPU)
        reconstruction = session.run(["reconstruction"], {"input": x.numpy()})[0]
        np.testing.assert_allclose(reconstruction, replayed[:, 0].numpy(), rtol=1e-4, atol=1e-5)
        assert float(replayed.abs().sum()) > 0  # a signal reached the input: the test tests something


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_by_hand(shared):
    """prelu(x) = x for x > 0, slope * x otherwise; one slope per feature or one for all."""
    graph = specc.load(
        "name: p\ninput: {channels: 2, size: 1}\nclasses: 2\nlayers:\n  - {type: flatten}\n"
        f"  - {{name: t, type: prelu, shared: {str(shared).lower()}}}\n  - {{name: fc, type: linear, units: 2, bias: false}}\n"
    )
    model = specc_torch.build(graph).eval()
    assert specc.check(graph).report.info("t").params == (1 if shared else 2)
    assert model.t.weight.tolist() == ([0.25] if shared else [0.25, 0.25])  # PyTorch's initial slope
    with torch.no_grad():
        model.t.weight.copy_(torch.tensor([0.1] if shared else [0.1, 0.5]))
        model.fc.weight.copy_(torch.eye(2))
    x = torch.tensor([[[[-2.0]], [[-4.0]]], [[[3.0]], [[-1.0]]]])  # (2, 2, 1, 1)
    want = [[-0.2, -0.4], [3.0, -0.1]] if shared else [[-0.2, -2.0], [3.0, -0.5]]
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.tensor(want))
    session = make_session(to_bytes(emit(graph, state_dict_numpy(model))), CPU)
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], want, rtol=1e-6)


# Every layer type must come back from specc's own ONNX as the same network (none refused).
IMPORTED_BACK = set(OPS)


@pytest.mark.parametrize("kind", sorted(OPS))
def test_the_importer_reads_every_op_back_or_refuses_it_in_one_line(kind, tmp_path):
    """specc's own ONNX of each example, imported (`specc.from_onnx`): the same network (same
    outputs with the imported weights), or a one-line refusal naming the node — never a crash."""
    from specc.errors import UserError
    from specc_onnx import save

    graph = example(kind)
    model = randomised(graph)
    path = tmp_path / "m.onnx"
    save(emit(graph, state_dict_numpy(model), fold_bn=False), path)
    try:
        imported, weights = specc.from_onnx(path)
    except UserError as exc:
        assert kind not in IMPORTED_BACK, str(exc)
        assert str(exc).startswith(f"{path}: node ") and "\n" not in str(exc)
        return
    rebuilt = specc_torch.build(imported).eval()
    loaded = rebuilt.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not loaded.unexpected_keys and all(k.endswith("num_batches_tracked") for k in loaded.missing_keys)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=1e-5, atol=1e-5)
