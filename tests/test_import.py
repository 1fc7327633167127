"""`specc import` / `specc.from_onnx` / `specc.from_torch`: ONNX (and PyTorch through ONNX)
back to a spec and its weights. Oracles: specc's own emitter (a round trip gives the same
graph and weights), the torch forward pass and onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from import_helpers import comparable, image_input, save_onnx
from onnx import helper
from torch import nn

import specc
import specc_torch
from specc.errors import UserError
from specc.ir import Graph
from specc.spec import load_graph_text
from specc_onnx import emit, random_weights, to_bytes
from specc_onnx.importer import import_onnx, layer_name
from specc_onnx.importer.view import OnnxNode

ROOT = Path(__file__).resolve().parents[1]
CPU = ["CPUExecutionProvider"]

FUSED = """
name: fused
description: fused activations, batch_norm kept, branches joined
input: {channels: 3, size: 12}
classes: 5
layers:
  - {name: c1, type: conv, filters: 8, kernel: 3, padding: same, activation: relu6}
  - {name: bn1, type: batch_norm, eps: 0.001}
  - {name: c2, type: conv, filters: 8, kernel: 3, padding: 1, activation: silu}
  - {name: c3, type: conv, inputs: bn1, filters: 4, kernel: 1, bias: false, activation: leaky_relu, slope: 0.2}
  - {name: c4, type: conv, inputs: bn1, filters: 4, kernel: 3, dilation: 2, padding: 2, activation: hardswish}
  - {name: cat, type: concat, inputs: [c2, c3, c4]}
  - {name: pool, type: max_pool, kernel: 3, stride: 2, padding: 1}
  - {name: avg, type: avg_pool, kernel: 2, count_include_pad: true}
  - {name: act, type: tanh}
  - {name: lrn, type: local_response_norm, size: 3}
  - {name: flat, type: flatten}
  - {name: fc1, type: linear, units: 16, activation: {type: elu, alpha: 0.5}}
  - {name: drop, type: dropout, rate: 0.5}
  - {name: fc2, type: linear, units: 5}
"""

SE_BLOCK = """
name: se_block
input: {channels: 3, size: 8}
layers:
  - {name: stem, type: conv, filters: 16, kernel: 3, padding: same, groups: 1, activation: relu}
  - {name: squeeze, type: global_avg_pool}
  - {name: reduce, type: linear, units: 4, activation: relu}
  - {name: expand, type: linear, units: 16, activation: sigmoid}
  - {name: excite, type: mul, inputs: [stem, expand]}
  - {name: up, type: conv_transpose, filters: 8, kernel: 2, stride: 2}
  - {name: padded, type: pad, padding: [1, 0, 2, 1], mode: reflect}
  - {name: skip, type: conv, inputs: padded, filters: 8, kernel: 1, activation: gelu}
  - {name: sum, type: add, inputs: [padded, skip]}
  - {name: gate, type: sigmoid}
"""


def _round_trip(graph: Graph, output: str = "logits") -> tuple[Graph, dict]:
    weights = random_weights(graph)
    model = emit(graph, weights, fold_bn=False, output=output)
    imported, imported_weights = import_onnx(to_bytes(model))
    assert comparable(imported) == comparable(graph)
    assert set(imported_weights) == set(weights)
    for key, array in weights.items():
        np.testing.assert_array_equal(imported_weights[key], array, err_msg=key)
    return imported, imported_weights


@pytest.mark.parametrize(
    ("source", "output"),
    [("allcnn_c.yaml", "probs"), ("resnet_tiny.yaml", "probs"), ("resnet_tiny.yaml", "logits")],
)
def test_paper_specs_round_trip(source, output):
    graph = specc.load(str(ROOT / "specs" / source))
    imported, _ = _round_trip(graph if output == "probs" else graph.with_nodes(graph.nodes[:-1]), output)
    assert load_graph_text(specc.fmt(imported), "again") == imported  # canonical YAML loads back the same


def test_fused_activations_norms_and_branches_round_trip():
    imported, _ = _round_trip(specc.load(FUSED))
    c1, c3, fc1 = imported.node("c1"), imported.node("c3"), imported.node("fc1")
    assert c1.op.activation == "relu6" and c3.op.slope == 0.2  # type: ignore[attr-defined]
    assert fc1.op.params()["activation"] == {"type": "elu", "alpha": 0.5}
    assert imported.node("bn1").type == "batch_norm" and imported.node("bn1").op.eps == 0.001  # type: ignore[attr-defined]


def test_squeeze_excitation_and_structure_ops_round_trip():
    imported, _ = _round_trip(specc.load(SE_BLOCK))
    assert imported.classes is None  # ends in a feature map, not class scores
    assert imported.node("excite").inputs == ("stem", "expand")


# -- PyTorch through ONNX export --------------------------------------------------------------
class Plain(nn.Module):
    """A hand-written torch model: the ops a user's CNN is made of."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.left = nn.Conv2d(8, 8, 3, padding=1)
        self.right = nn.Sequential(nn.Conv2d(8, 4, 1), nn.Hardswish())
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(12 * 4 * 4, 32)
        self.head = nn.Linear(32, 6)

    def forward(self, x):
        x = self.stem(x)  # (N, 8, 8, 8)
        x = torch.cat([torch.relu(self.left(x) + x), self.right(x)], dim=1)  # (N, 12, 8, 8)
        x = self.drop(self.pool(x))  # (N, 12, 4, 4)
        x = x.view(x.size(0), -1)
        return self.head(nn.functional.gelu(self.fc(x)))


def _plain_model() -> nn.Module:
    torch.manual_seed(0)
    model = Plain()
    norm = model.stem[1]
    assert isinstance(norm, nn.BatchNorm2d)
    with torch.no_grad():  # statistics away from the defaults, so that BN does something
        norm.running_mean.uniform_(-1, 1)  # type: ignore[union-attr]
        norm.running_var.uniform_(0.5, 2)  # type: ignore[union-attr]
        norm.weight.uniform_(0.5, 2)
    return model.eval()


def test_torch_model_imports_and_computes_the_same():
    model, x = _plain_model(), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    graph, weights = specc.from_torch(model, x[:1])
    assert graph.name == "Plain" and graph.input_shape == (3, 8, 8) and graph.classes == 6
    module = specc_torch.build(graph)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    module.eval()
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(module(x), expected, atol=1e-4, rtol=1e-4)
    session = ort.InferenceSession(to_bytes(emit(graph, weights)), providers=CPU)
    got = np.asarray(session.run(None, {"input": x.numpy()})[0])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-4)


class SqueezeExcite(nn.Module):
    """Depthwise conv, an SE gate on a 1x1 map, a transposed conv, a mean over H and W."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce, self.expand = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)

    def forward(self, x):
        x = torch.relu(self.depthwise(self.conv(x)))
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(self.pool(x)))))
        return self.up(x * gate).mean((2, 3))


def _torch_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "squeeze_excite": SqueezeExcite(),
        # BatchNorm1d's default statistics equal its scale and shift: the exporter stores them
        # once and aliases the copies with Identity nodes.
        "head_bn1d_softmax": nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.BatchNorm1d(5), nn.Softmax(dim=1)
        ),
        "activations": nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.PReLU(4),
            nn.ELU(0.5),
            nn.Hardtanh(-2, 2),
            nn.Softplus(),
            nn.Mish(),
            nn.Hardsigmoid(),
            nn.Conv2d(4, 4, 1),
            nn.GELU(),
            nn.LeakyReLU(0.1),
        ),
    }


@pytest.mark.parametrize("key", ["squeeze_excite", "head_bn1d_softmax", "activations"])
def test_small_torch_models_compute_the_same(key):
    model, x = _torch_models()[key].eval(), torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    graph, weights = specc.from_torch(model, x)
    module = specc_torch.build(graph, output="probs" if graph.classes else "logits")  # keep the softmax
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(x), model(x), atol=1e-4, rtol=1e-4)
    if key == "activations":
        types = [n.type for n in graph.nodes]
        assert types == ["conv", "prelu", "elu", "hardtanh", "softplus", "mish", "hardsigmoid", "conv", "leaky_relu"]
        assert graph.nodes[-2].op.activation == "gelu"  # type: ignore[attr-defined]


def test_torch_names_become_layer_names():
    def node(name: str, op_type: str) -> OnnxNode:
        return OnnxNode(0, name, op_type, (), ("y",), {})

    assert layer_name(node("/layer1/layer1.0/conv1/Conv", "Conv"), "conv", set()) == "layer1_0_conv1"
    assert layer_name(node("conv3/conv", "Conv"), "conv", set()) == "conv3"
    assert layer_name(node("/Reshape", "Reshape"), "flatten", {"flatten1"}) == "flatten2"
    assert layer_name(node("/fc/Gemm", "Gemm"), "fc", {"fc"}) == "fc_2"
    assert layer_name(node("class", "Relu"), "relu", set()) == "class_layer"  # a Python keyword
    assert layer_name(node("0.weird name", "Relu"), "relu", set()) == "relu_0_weird_name"


# -- refusals -------------------------------------------------------------------------------
def test_an_unsupported_op_is_one_line_naming_the_node(tmp_path):
    path = save_onnx(
        tmp_path,
        [helper.make_node("Einsum", ["x", "x"], ["y"], name="mix", equation="nchw,nchw->nchw")],
        [image_input()],
        [image_input("y")],
    )
    with pytest.raises(UserError) as info:
        specc.from_onnx(path)
    assert str(info.value) == f"{path}: node mix (Einsum) at #1 of 1, after the input: specc has no layer for this op"


def test_a_non_image_input_is_refused(tmp_path):
    path = save_onnx(
        tmp_path,
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        [image_input("x", (1, 3, 32))],
        [image_input("y", (1, 3, 32))],
    )
    with pytest.raises(UserError) as info:
        specc.from_onnx(path)
    assert str(info.value) == (
        f"{path}: input 'x' has shape 1x3x32 — specc imports one NxCxHxW image input with fixed C, H and W"
    )


def test_asymmetric_pool_pads_are_refused_with_the_reason(tmp_path):
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], pads=[0, 0, 1, 1])
    path = save_onnx(tmp_path, [pool], [image_input()], [image_input("y", (1, 3, 3, 3))])
    with pytest.raises(UserError) as info:
        specc.from_onnx(path)
    assert str(info.value) == (
        f"{path}: node p (MaxPool) at #1 of 1, after the input: asymmetric pads [0, 0, 1, 1] (top, left, bottom, right)"
        " — specc pads each side of a window equally"
    )


def test_matmul_add_reshape_and_reduce_mean_by_hand(tmp_path):
    """The forms other exporters leave: a stored Reshape target, MatMul + Add, ReduceMean."""
    rng = np.random.default_rng(0)
    conv_w, fc_w, fc_b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 1, 1), (8, 4), (4,)))
    tensors = [
        onnx.numpy_helper.from_array(conv_w, "cw"),
        onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
        onnx.numpy_helper.from_array(fc_w, "fw"),
        onnx.numpy_helper.from_array(fc_b, "fb"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["c"], name="c", kernel_shape=[1, 1]),
        helper.make_node("ReduceMean", ["c"], ["m"], name="mean", axes=[2, 3], keepdims=1),
        helper.make_node("Reshape", ["c", "shape"], ["flat"], name="flat"),
        helper.make_node("MatMul", ["flat", "fw"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "fb"], ["y"], name="fc_bias"),
    ]
    path = save_onnx(
        tmp_path,
        nodes,
        [image_input("x", (1, 3, 2, 2))],
        [image_input("y", (1, 4)), image_input("m", (1, 2, 1, 1))],
        tensors,
        opset=17,
    )
    graph, weights = specc.from_onnx(path)
    assert [(n.name, n.type) for n in graph.nodes] == [
        ("c", "conv"),
        ("mean", "adaptive_avg_pool"),
        ("flat", "flatten"),
        ("fc", "linear"),
    ]
    assert graph.outputs == ("fc", "mean") and graph.classes is None
    np.testing.assert_array_equal(weights["fc.weight"], fc_w.T)
    x = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=CPU).run(None, {"x": x})
    got = ort.InferenceSession(to_bytes(emit(graph, weights)), providers=CPU).run(None, {"input": x})
    for a, b in zip(got, expected):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_adding_a_constant_is_refused(tmp_path):
    bias = onnx.numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "b")
    add = helper.make_node("Add", ["x", "b"], ["y"], name="shift")
    path = save_onnx(tmp_path, [add], [image_input()], [image_input("y")], [bias])
    with pytest.raises(UserError, match=r"node shift \(Add\) at #1 of 1, after the input: it adds the constant 'b'"):
        specc.from_onnx(path)
