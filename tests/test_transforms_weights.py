"""`--weights CKPT --weights-out OUT`: a trained checkpoint carried through transforms."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import specc  # noqa: E402
from specc.cli import main  # noqa: E402
from specc.emit import spec_hash  # noqa: E402
from specc.spec import load_graph_text  # noqa: E402
from specc.transforms.weights import weight_shapes  # noqa: E402
from tests.conftest import SPECS  # noqa: E402

ALLCNN_C = str(SPECS / "allcnn_c.yaml")


def random_state(spec) -> dict:
    report = specc.check(spec).report
    torch.manual_seed(0)
    return {f"{layer}.{k}": torch.randn(shape) for layer, e in weight_shapes(report).items() for k, shape in e.items()}


def forward(graph, state: dict, x):
    """A tiny reference evaluator (inference mode) for the ops these tests use."""
    values = {"input": x}
    for node in graph.nodes:
        op, inp = node.op, values[node.inputs[0]]
        if node.type == "conv":
            y = F.conv2d(inp, state[f"{node.name}.weight"], state.get(f"{node.name}.bias"), op.stride_hw(), op.pads())
            y = F.relu(y) if op.activation == "relu" else y
        elif node.type == "linear":
            y = F.linear(inp, state[f"{node.name}.weight"], state.get(f"{node.name}.bias"))
            y = F.relu(y) if op.activation == "relu" else y
        elif node.type == "max_pool":
            y = F.max_pool2d(inp, op.kernel_hw(), op.stride_hw(), op.pads())
        elif node.type == "global_avg_pool":
            y = inp.mean((2, 3))
        elif node.type == "flatten":
            y = inp.flatten(1)
        elif node.type == "softmax":
            y = F.softmax(inp, 1)
        elif node.type == "dropout":
            y = inp
        else:
            raise AssertionError(f"no reference for {node.type}")
        values[node.name] = y
    return values[graph.output.name]


def test_inverse_carries_trained_weights_unchanged(tmp_path, capsys):
    state = random_state(ALLCNN_C)
    src, dst, spec = tmp_path / "in.pt", tmp_path / "out.pt", tmp_path / "pooled.yaml"
    torch.save(state, src)
    argv = ["transform", ALLCNN_C, "--replace-stride", "maxpool", "--weights", str(src), "--weights-out", str(dst)]
    assert main([*argv, "-o", str(spec)]) == 0
    assert f"wrote {dst} (weights of {src}, remapped through replace_stride=maxpool)" in capsys.readouterr().err
    out = torch.load(dst, weights_only=True)
    assert list(out) == list(state)
    assert all(torch.equal(out[k], state[k]) for k in state)
    # A stride-2 conv is not a stride-1 conv + max-pool, but the pooled network runs on the
    # carried weights and keeps every shape.
    pooled = load_graph_text(spec.read_text(), str(spec))
    original = specc.load(ALLCNN_C)
    x = torch.randn(1, 3, 32, 32)
    assert forward(pooled, out, x).shape == forward(original, state, x).shape == (1, 10)


def test_checkpoint_form_gets_the_new_spec(tmp_path, capsys):
    state = random_state(ALLCNN_C)
    src, dst = tmp_path / "ckpt.pt", tmp_path / "out.pt"
    wrapped = {f"module.{k}": v for k, v in state.items()}  # as saved from DistributedDataParallel
    checkpoint = {"format": "specc-checkpoint-v1", "model": wrapped, "spec": "old", "epoch": 7, "optimizer": {}}
    torch.save(checkpoint, src)
    argv = ["transform", ALLCNN_C, "--replace-stride", "maxpool", "--weights", str(src), "--weights-out", str(dst)]
    assert main([*argv, "--diff"]) == 0
    assert "dropped the training state optimizer" in capsys.readouterr().err
    out = torch.load(dst, weights_only=True)
    assert out["format"] == "specc-checkpoint-v1" and out["epoch"] == 7 and "optimizer" not in out
    assert out["spec_hash"] == spec_hash(load_graph_text(out["spec"], "<ckpt>"))
    assert load_graph_text(out["spec"], "<ckpt>").node("conv3_pool").type == "max_pool"
    assert all(torch.equal(out["model"][k], state[k]) for k in state)


def test_fc_to_conv_on_a_one_by_one_map_computes_the_same_function(tmp_path, write_spec):
    spec = write_spec(
        """\
name: fc_head
input: {channels: 3, size: 8}
classes: 5
layers:
  - {type: conv, filters: 6, kernel: 3, padding: same, activation: relu}
  - {type: max_pool, kernel: 8}
  - {type: flatten}
  - {type: linear, units: 7, activation: relu}
  - {type: dropout, rate: 0.5}
  - {type: linear, units: 5}
  - {type: softmax}
"""
    )
    state = random_state(spec)
    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save(state, src)
    result = specc.transform(spec, fc_to_conv=True)
    assert main(["transform", spec, "--fc-to-conv", "--weights", str(src), "--weights-out", str(dst)]) == 0
    out = torch.load(dst, weights_only=True)
    assert out["fc1.weight"].shape == (7, 6, 1, 1)
    assert torch.equal(out["fc1.weight"].flatten(1), state["fc1.weight"])
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(forward(result.graph, out, x), forward(result.source, state, x))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replace-pooling", "conv"], "--weights: pool1_conv (conv) is a new layer after replace_pooling=conv"),
        (["--width-mult", "2"], "--weights: conv1.weight changes shape [96, 3, 3, 3] -> [192, 3, 3, 3]"),
    ],
)
def test_transforms_that_change_weights_refuse_to_remap(tmp_path, capsys, argv, message):
    src = tmp_path / "in.pt"
    torch.save(random_state(SPECS / "model_c.yaml"), src)
    dst = tmp_path / "out.pt"
    assert (
        main(["transform", str(SPECS / "model_c.yaml"), *argv, "--weights", str(src), "--weights-out", str(dst)]) == 2
    )
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert not dst.exists()


class Pickled:
    """Not a tensor: a weights_only load refuses it."""


def _bad_checkpoints(tmp_path):
    state = random_state(ALLCNN_C)
    missing = dict(state)
    del missing["conv4.bias"]
    wrong = dict(state) | {"conv2.weight": torch.zeros(96, 96, 1, 1)}
    extra = dict(state) | {"conv99.weight": torch.zeros(1)}
    full = tmp_path / "full.pt"
    torch.save(state, full)
    files = {
        "missing": missing,
        "wrong": wrong,
        "extra": extra,
        "notdict": [1, 2],
        "otherformat": {"format": "keras-h5", "model": state},
        "pickled": {"model": state, "extra": Pickled()},
    }
    for name, value in files.items():
        torch.save(value, tmp_path / f"{name}.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint" * 8)
    (tmp_path / "truncated.pt").write_bytes(full.read_bytes()[:4096])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "no weight 'conv4.bias' for layer conv4 of allcnn_c — a checkpoint of another spec?"),
        ("wrong", "'conv2.weight' has shape [96, 96, 1, 1], allcnn_c expects [96, 96, 3, 3]"),
        ("extra", "unexpected weight 'conv99.weight' — allcnn_c has no such layer parameter"),
        ("notdict", "neither a state_dict nor a specc checkpoint (no tensors by layer name)"),
        ("garbage", "not a readable PyTorch checkpoint (truncated or corrupt?)"),
        ("truncated", "not a readable PyTorch checkpoint (truncated or corrupt?)"),
        ("pickled", "holds Python objects other than tensors and plain data — refused"),
        ("otherformat", "checkpoint format 'keras-h5' — expected 'specc-checkpoint-v1'"),
        ("absent", "no such file"),
    ],
)
def test_bad_checkpoints_are_one_line_errors(tmp_path, capsys, name, message):
    _bad_checkpoints(tmp_path)
    src, dst = tmp_path / f"{name}.pt", tmp_path / "out.pt"
    argv = ["transform", ALLCNN_C, "--replace-stride", "maxpool", "--weights", str(src), "--weights-out", str(dst)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {src}: {message}")
    assert err.count("\n") == 1
    assert not dst.exists()
