"""Several outputs and networks without classes through the backends: the PyTorch module (a
tuple, against hand-written torch), the generated file, the ONNX model (one output per layer,
in onnxruntime), explanations of hidden layers, and the transforms that move an output."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from outputs_specs import BACKBONE
from torch import nn

import specc
from specc.cli import main
from specc.errors import SpecError, UserError
from specc.transforms import transform
from specc_explain_onnx import emit_explain
from specc_onnx import emit, to_bytes, verify
from specc_onnx.runtime import read_metadata
from specc_torch.codegen import class_name_for, generate
from specc_torch.weights import state_dict_numpy
from specc_viz import explain

SEGMENTER = """name: seg
input: {channels: 3, size: 16}
layers:
  - {name: c1, type: conv, filters: 8, kernel: 3, padding: same, activation: relu}
  - {name: c2, type: conv, filters: 4, kernel: 1}
  - {type: softmax}
"""
# A batch_norm output that folds into its conv (no activation between them).
FOLDED = """name: folded
input: {channels: 2, size: 8}
classes: 3
outputs: [feat, probs]
layers:
  - {name: c1, type: conv, filters: 4, kernel: 3, padding: same}
  - {name: feat, type: batch_norm}
  - {type: relu}
  - {type: global_avg_pool}
  - {name: fc, type: linear, units: 3}
  - {name: probs, type: softmax}
"""
CPU = ["CPUExecutionProvider"]


class HandWritten(nn.Module):
    """BACKBONE written by hand: conv-relu-bn, conv-relu (dropout), conv-relu, mean, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.stage1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        stage1 = self.stage1(F.relu(self.conv1(x)))
        stage2 = F.relu(self.conv2(stage1))  # dropout is the identity in eval
        return stage1, stage2, self.head(F.relu(self.conv3(stage2)).mean(dim=(2, 3)))


def randomised(spec: str, seed: int = 1):
    model = specc.build(spec, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def images(graph, n: int = 2) -> torch.Tensor:
    return torch.randn(n, *graph.input_shape, generator=torch.Generator().manual_seed(0))


def onnx_outputs(model, x: torch.Tensor) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(to_bytes(model), providers=CPU)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": x.numpy()})))


# -- PyTorch -------------------------------------------------------------------------------
def test_module_returns_the_outputs_in_order_as_hand_written_torch_does():
    model = randomised(BACKBONE)
    hand = HandWritten().eval()
    hand.load_state_dict(model.state_dict())
    x = images(model.graph)
    with torch.no_grad():
        got, want = model(x), hand(x)
    assert isinstance(got, tuple) and model.output_names == ("stage1", "stage2", "head")
    assert [tuple(t.shape) for t in got] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 5)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_capture_and_stop_at_still_work_with_several_outputs():
    model = randomised(BACKBONE)
    x = images(model.graph)
    with torch.no_grad():
        out, captured = model(x, capture={"conv2"})
        stage2, _ = model(x, stop_at="stage2")
    assert len(out) == 3 and torch.equal(captured["conv2"], out[1]) and torch.equal(stage2, out[1])


def test_classless_single_output_is_a_tensor_and_a_trailing_softmax_stays():
    model = specc.build(SEGMENTER).eval()
    x = images(model.graph)
    with torch.no_grad():
        out = model(x)
    assert model.output_names == ("softmax1",) and out.shape == (2, 4, 16, 16)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2, 16, 16))  # probabilities per pixel


def test_probs_is_refused_for_networks_that_are_not_classifiers():
    with pytest.raises(ValueError, match="^output 'probs' turns a classifier's scores into probabilities, but spec"):
        specc.build(SEGMENTER, output="probs")


def test_a_multi_output_classifier_keeps_its_softmax():
    model = specc.build(FOLDED).eval()
    with torch.no_grad():
        feat, probs = model(images(model.graph))
    assert model.output_names == ("feat", "probs") and feat.shape == (2, 4, 8, 8)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))  # output="logits" drops no softmax here


# -- the generated file ----------------------------------------------------------------------
def _generated(graph):
    source = generate(graph)
    namespace: dict = {}
    exec(compile(source, f"<{graph.name}>", "exec"), namespace)
    return source, namespace[class_name_for(graph.name)]


def test_generated_code_returns_the_same_tuple_and_says_so():
    model = randomised(BACKBONE)
    source, cls = _generated(model.graph)
    assert "forward returns\na tuple of 3 outputs: stage1 (B, 8, 16, 16), stage2 (B, 16, 8, 8), head (B, 5)." in source
    assert "-> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:" in source
    assert "return (stage1, stage2, x)" in source
    net = cls().eval()
    net.load_state_dict(model.state_dict())
    x = images(model.graph)
    with torch.no_grad():
        for a, b in zip(net(x), model(x)):
            assert torch.equal(a, b)


def test_generated_code_of_a_classless_spec_names_its_output():
    source, _ = _generated(specc.load(SEGMENTER))
    assert "forward returns\n(B, 4, 16, 16), the output of layer 'softmax1'." in source


# -- ONNX ----------------------------------------------------------------------------------
def test_onnx_has_one_output_per_layer_and_matches_torch_per_output():
    model = randomised(BACKBONE)
    graph = model.graph
    onnx_model = emit(graph, state_dict_numpy(model))
    verify(onnx_model, graph)  # checker + strict shape inference == specc's shapes
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in onnx_model.graph.output]
    assert [o.name for o in onnx_model.graph.output] == ["stage1", "stage2", "head"]
    assert dims == [["batch", 8, 16, 16], ["batch", 16, 8, 8], ["batch", 5]]
    x = images(graph, 3)
    got = onnx_outputs(onnx_model, x)
    with torch.no_grad():
        want = model(x)
    for name, tensor in zip(model.output_names, want):
        np.testing.assert_allclose(got[name], tensor.numpy(), rtol=0, atol=1e-4, err_msg=name)
    # stage2 is a dropout: it emits no node of its own, so its output is an Identity of conv2.
    identity = next(n for n in onnx_model.graph.node if n.output[0] == "stage2")
    assert identity.op_type == "Identity" and list(identity.input) == ["conv2"]
    meta = read_metadata(onnx_model)
    assert (meta.classes, meta.output, meta.outputs) == (None, "features", ["stage1", "stage2", "head"])


def test_a_folded_batch_norm_output_keeps_its_name():
    model = randomised(FOLDED)
    onnx_model = emit(model.graph, state_dict_numpy(model))
    verify(onnx_model, model.graph)
    assert not any(n.op_type == "BatchNormalization" for n in onnx_model.graph.node)
    assert [o.name for o in onnx_model.graph.output] == ["feat", "probs"]
    x = images(model.graph)
    got = onnx_outputs(onnx_model, x)
    with torch.no_grad():
        feat, probs = model(x)
    np.testing.assert_allclose(got["feat"], feat.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["probs"], probs.numpy(), rtol=0, atol=1e-4)  # the softmax stays
    assert read_metadata(onnx_model).output == "probs"


def test_onnx_of_a_classless_spec_is_named_after_its_layer():
    model = specc.build(SEGMENTER).eval()
    onnx_model = emit(model.graph, state_dict_numpy(model))
    x = images(model.graph)
    got = onnx_outputs(onnx_model, x)
    with torch.no_grad():
        np.testing.assert_allclose(got["softmax1"], model(x).numpy(), rtol=0, atol=1e-5)
    with pytest.raises(UserError, match="^--output probs: output 'probs' turns a classifier's"):
        emit(model.graph, state_dict_numpy(model), output="probs")


def test_compile_a_classless_spec(tmp_path, capsys, write_spec):
    spec = write_spec(SEGMENTER)
    out = tmp_path / "build"
    assert main(["compile", spec, "-o", str(out)]) == 0
    assert "seg: input 3x16x16, output softmax1 4x16x16" in capsys.readouterr().out
    session = ort.InferenceSession(str(out / "seg.onnx"), providers=CPU)
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("softmax1", ["batch", 4, 16, 16])]
    assert "the output of layer 'softmax1'" in (out / "seg.py").read_text()
    assert main(["compile", spec, "-o", str(out), "--force", "--output", "probs"]) == 2
    assert capsys.readouterr().err.startswith("error: --output probs: output 'probs' turns a classifier's scores")
    assert main(["predict", str(out / "seg.onnx"), "x.png"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out / 'seg.onnx'}: predict ranks class scores, but spec 'seg' has no classes — add 'classes: N'"
        " to the spec (its last layer giving N scores) and compile it again\n"
    )


# -- explanations of hidden layers ------------------------------------------------------------
@pytest.mark.parametrize("method", ["guided", "deconvnet"])
def test_explain_a_hidden_layer_of_a_backbone_in_onnx_and_torch(method):
    model = randomised(BACKBONE)
    x = images(model.graph)
    expected = explain(model, x, layer="conv2", units="3", method=method).numpy()
    assert np.abs(expected).max() > 1e-4
    onnx_model = emit_explain(model.graph, state_dict_numpy(model), method=method, layer="conv2", unit="3")
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=CPU)
    got = session.run(["reconstruction"], {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_explain_refuses_a_layer_no_output_needs():
    graph = specc.load(BACKBONE.replace("[stage1, stage2, head]", "[stage1]"))
    with pytest.raises(UserError, match="^--layer conv3: feeds none of the network's outputs"):
        emit_explain(graph, {}, method="guided", layer="conv3", unit="0")


def test_visualize_a_hidden_layer_of_a_classless_spec(tmp_path, write_spec, capsys):
    spec = write_spec(SEGMENTER)
    assert main(["visualize", spec, "--layer", "c1", "--unit", "2", "--no-image", "-o", str(tmp_path / "v.png")]) == 0
    assert (tmp_path / "v.png").stat().st_size > 0


# -- transforms move outputs with the layers ---------------------------------------------------
def test_replace_stride_moves_an_output_to_the_pool_that_takes_its_place():
    result = transform(BACKBONE.replace("[stage1, stage2, head]", "[conv2, head]"), replace_stride="maxpool")
    assert result.graph.outputs == ("conv2_pool", "head")
    assert result.report.output_shapes == {"conv2_pool": (16, 8, 8), "head": (5,)}


def test_fold_batch_norm_renames_a_folded_output():
    result = transform(FOLDED, fold_batch_norm=True)
    assert result.graph.outputs == ("c1", "probs") and "feat" not in result.graph.by_name


def test_fc_to_conv_moves_the_head_output_and_refuses_to_change_another():
    head = """name: h
input: {channels: 3, size: 4}
outputs: [c, fc2]
layers:
  - {name: c, type: conv, filters: 4, kernel: 3}
  - {type: flatten}
  - {name: fc1, type: linear, units: 6}
  - {name: fc2, type: linear, units: 3}
"""
    assert transform(head, fc_to_conv=True).graph.outputs == ("c", "gap")
    with pytest.raises(SpecError) as err:
        transform(head.replace("[c, fc2]", "[fc1, fc2]"), fc_to_conv=True)
    (message,) = [d.message for d in err.value.diagnostics]
    assert message == (
        "transform fc_to_conv: cannot convert fc1: fc1 is a network output (outputs:) whose value would change"
        " (--skip-unsupported leaves it in place)"
    )


# -- the commands that need a classifier ---------------------------------------------------------
def test_eval_refuses_a_classless_spec_in_one_line(tmp_path, write_spec, capsys):
    spec = write_spec(SEGMENTER)
    weights = tmp_path / "seg.pt"
    torch.save(specc.build(spec).state_dict(), weights)
    assert main(["eval", spec, "--weights", str(weights), "--data", "synthetic"]) == 2
    assert capsys.readouterr().err == (
        f"error: specc eval needs class scores, but spec 'seg' ({spec}) has no classes — add 'classes: N' to the"
        " spec (its last layer must then give N scores)\n"
    )


def test_predict_ranks_the_last_output_of_a_multi_output_classifier(tmp_path, write_spec, capsys):
    from PIL import Image

    spec = write_spec(
        FOLDED.replace("classes: 3\n", "classes: 3\nlabels: [cat, dog, owl]\n").replace("channels: 2", "channels: 3")
    )
    out = tmp_path / "build"
    assert main(["compile", spec, "-o", str(out), "--target", "onnx"]) == 0
    image = tmp_path / "x.png"
    Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)).save(image)
    capsys.readouterr()
    assert main(["predict", str(out / "folded.onnx"), str(image), "--top-k", "3", "--json"]) == 0
    import json

    (result,) = json.loads(capsys.readouterr().out)["results"]
    model = specc.build(spec).eval()
    x = torch.from_numpy(np.asarray(Image.open(image), dtype=np.float32).transpose(2, 0, 1)[None] / 255.0)
    with torch.no_grad():
        probs = model(x)[1][0].numpy()  # the softmax output, taken as it is (not softmaxed again)
    assert [t["label"] for t in result["top"]] == [["cat", "dog", "owl"][i] for i in np.argsort(-probs)]
    np.testing.assert_allclose([t["prob"] for t in result["top"]], np.sort(probs)[::-1], atol=1e-5)
