"""Oracle tests of the less common branches of the spec language, the transforms and lint:
one direct assertion per transform option, `base:` merging `train:` key by key, `--set` into
the layer list, the border-drop and rounding warnings (checked against torch's own pools and
gradients), grouped convolutions carried exactly through `transform --weights`. Expected
values are written by hand or computed by torch.nn, never by specc."""

from __future__ import annotations

import pytest
import torch
from oracle_helpers import GROUPED
from torch import nn

import specc_torch
from specc.api import check, load
from specc.cli import main
from specc.errors import UserError
from specc.shapes import infer
from specc.training.config import recipe_of

# -- (b) one direct assertion per transform option -----------------------------------------
BASE = """\
name: t
input: {channels: 3, size: 8}
classes: 4
labels: [a, b, c, d]
defaults:
  conv: {kernel: 3, padding: same, activation: relu}
layers:
  - {type: conv, filters: 8}
  - {type: max_pool, kernel: 2}
  - {type: conv, filters: 6, stride: 2}
  - {type: avg_pool, kernel: 2}
  - {type: flatten}
  - {type: linear, units: 4}
"""
# Shapes by hand: 3x8x8 -> conv1 8x8x8 -> pool1 8x4x4 -> conv2 (4 + 2 - 3)//2 + 1 = 2: 6x2x2
# -> avgpool1 6x1x1 -> flatten1 6 -> fc1 4.
UNCHANGED = {"conv1": ("conv", {"filters": 8, "stride": 1}), "pool1": ("max_pool", {"kernel": 2})}


def transformed(write_spec, capsys, *flags: str):
    """(exit status, the new graph or None, stderr) of `specc transform BASE FLAGS`."""
    status = main(["transform", write_spec(BASE), *flags])
    out = capsys.readouterr()
    return status, (load(out.out) if status == 0 else None), out.err


def layers_of(graph) -> list[tuple[str, str]]:
    return [(n.name, n.type) for n in graph.nodes]


def assert_params(graph, expected: dict) -> None:
    for name, (kind, params) in expected.items():
        node = graph.node(name)
        assert node.type == kind
        got = node.op.params()
        for key, value in params.items():
            got_value = tuple(got[key]) if isinstance(got[key], list) else got[key]
            assert got_value == value, f"{name}.{key}: {got_value!r}, expected {value!r}"


def test_replace_pooling_refuses_an_avg_pool_by_default(write_spec, capsys):
    status, _, err = transformed(write_spec, capsys, "--replace-pooling", "strided")
    assert status == 2
    assert "avgpool1 is an avg_pool, and --pool-types is max" in err


def test_replace_pooling_strided_with_skip_unsupported(write_spec, capsys):
    status, graph, err = transformed(write_spec, capsys, "--replace-pooling", "strided", "--skip-unsupported")
    assert status == 0 and "left in place" in err
    # pool1 goes; conv1 takes its stride 2: (8 + 2 - 3)//2 + 1 = 4, the pool's 4x4.
    assert layers_of(graph) == [
        ("conv1", "conv"), ("conv2", "conv"), ("avgpool1", "avg_pool"), ("flatten1", "flatten"), ("fc1", "linear"),
    ]  # fmt: skip
    assert_params(graph, {"conv1": ("conv", {"filters": 8, "stride": 2, "kernel": 3})})
    assert infer(graph).shapes["conv1"] == (8, 4, 4)


def test_replace_pooling_conv_with_pool_types_max_and_avg(write_spec, capsys):
    status, graph, _ = transformed(write_spec, capsys, "--replace-pooling", "conv", "--pool-types", "max,avg")
    assert status == 0
    assert layers_of(graph) == [
        ("conv1", "conv"), ("pool1_conv", "conv"), ("conv2", "conv"), ("avgpool1_conv", "conv"),
        ("flatten1", "flatten"), ("fc1", "linear"),
    ]  # fmt: skip
    # Each pool becomes a learned conv with its kernel and stride and as many filters as
    # channels: 2x2/2 valid, (8 - 2)//2 + 1 = 4 and (2 - 2)//2 + 1 = 1, the pools' sizes.
    assert_params(
        graph,
        {
            "pool1_conv": ("conv", {"filters": 8, "kernel": 2, "stride": 2, "padding": "valid", "activation": "relu"}),
            "avgpool1_conv": ("conv", {"filters": 6, "kernel": 2, "stride": 2, "padding": "valid"}),
        },
    )
    shapes = infer(graph).shapes
    assert (shapes["pool1_conv"], shapes["avgpool1_conv"]) == ((8, 4, 4), (6, 1, 1))


def test_replace_pooling_convpool(write_spec, capsys):
    status, graph, _ = transformed(write_spec, capsys, "--replace-pooling", "convpool", "--skip-unsupported")
    assert status == 0
    names = [n for n, _ in layers_of(graph)]
    assert names[:3] == ["conv1", "pool1_conv", "pool1"]
    # A stride-1 2x2 conv before the pool: 'same' is impossible for an even kernel; padding p
    # gives 8 + 2p - 1 and the pool floor((7 + 2p)/2) must stay 4, so p = 1 (9x9 -> 4x4).
    assert_params(graph, {"pool1_conv": ("conv", {"filters": 8, "kernel": 2, "stride": 1, "padding": 1})})
    assert graph.node("pool1").inputs == ("pool1_conv",)
    shapes = infer(graph).shapes
    assert (shapes["pool1_conv"], shapes["pool1"]) == ((8, 9, 9), (8, 4, 4))


@pytest.mark.parametrize(("target", "pool_type"), [("maxpool", "max_pool"), ("avgpool", "avg_pool")])
def test_replace_stride(write_spec, capsys, target, pool_type):
    status, graph, _ = transformed(write_spec, capsys, "--replace-stride", target)
    assert status == 0
    names = [n for n, _ in layers_of(graph)]
    assert names == ["conv1", "pool1", "conv2", "conv2_pool", "avgpool1", "flatten1", "fc1"]
    # conv2 at stride 1 gives 4x4; a 3x3/2 pool with padding 1 ('same') gives (4 + 2 - 3)//2 + 1 = 2.
    assert_params(graph, UNCHANGED | {"conv2": ("conv", {"filters": 6, "stride": 1})})
    assert graph.node("conv2_pool").type == pool_type
    assert graph.node("conv2_pool").op.kernel_hw() == (3, 3) and graph.node("conv2_pool").op.stride_hw() == (2, 2)
    assert graph.node("conv2_pool").op.pads() == (1, 1)
    assert infer(graph).shapes["conv2_pool"] == (6, 2, 2)


@pytest.mark.parametrize(
    ("flags", "conv1_filters", "conv2_filters"),
    [
        (("--width-mult", "0.5"), 4, 3),  # 8 * 0.5 = 4, 6 * 0.5 = 3
        (("--width-mult", "0.5", "--round", "4"), 4, 4),  # 3 is at least one multiple of 4
        (("--width-mult", "0.75"), 6, 5),  # 8 * 0.75 = 6; 6 * 0.75 = 4.5 rounds half up to 5
        # multiples of 4, rounded half up: 6/4 = 1.5 -> 2 -> 8; 4.5/4 = 1.125 -> 1 -> 4
        (("--width-mult", "0.75", "--round", "4"), 8, 4),
    ],
)
def test_width_mult_and_round(write_spec, capsys, flags, conv1_filters, conv2_filters):
    status, graph, _ = transformed(write_spec, capsys, *flags)
    assert status == 0
    assert_params(
        graph,
        {
            "conv1": ("conv", {"filters": conv1_filters}),
            "conv2": ("conv", {"filters": conv2_filters}),
            "fc1": ("linear", {"units": 4}),  # the classifier keeps the class count
        },
    )
    assert graph.input_shape == (3, 8, 8)


def test_width_mult_keeps_depthwise_depthwise(write_spec, capsys):
    pool = "  - {type: max_pool, kernel: 2}\n"
    text = BASE.replace(pool, "  - {type: conv, filters: 8, groups: 8}\n" + pool)
    assert main(["transform", write_spec(text), "--width-mult", "0.5"]) == 0
    graph = load(capsys.readouterr().out)
    # conv1 8 -> 4 channels, so the depthwise conv2 becomes 4 filters in 4 groups.
    assert_params(graph, {"conv1": ("conv", {"filters": 4}), "conv2": ("conv", {"filters": 4, "groups": 4})})


def test_classes(write_spec, capsys):
    status, graph, err = transformed(write_spec, capsys, "--classes", "10")
    assert status == 0
    assert graph.classes == 10 and graph.labels is None  # four labels cannot name ten classes
    assert "dropped the 4 labels" in err
    assert_params(graph, UNCHANGED | {"fc1": ("linear", {"units": 10})})
    assert infer(graph).info("fc1").params == 6 * 10 + 10


def test_input(write_spec, capsys):
    status, graph, _ = transformed(write_spec, capsys, "--input", "1x16x16")
    assert status == 0
    assert graph.input_shape == (1, 16, 16)
    assert layers_of(graph) == layers_of(load(BASE))
    # 16 -> conv1 16 -> pool1 8 -> conv2 4 -> avgpool1 2: the flatten now gives 6*2*2 = 24
    assert infer(graph).shapes["flatten1"] == (24,)
    status, _, err = transformed(write_spec, capsys, "--input", "3x2x2")
    # 2 -> conv1 2 -> pool1 1 -> conv2 (1 + 2 - 3)//2 + 1 = 1 -> a 2x2 avg pool on 1x1: refused
    assert status == 2 and "avgpool1" in err and "larger than its 1x1 input" in err


def test_fc_to_conv(write_spec, capsys):
    status, graph, _ = transformed(write_spec, capsys, "--fc-to-conv")
    assert status == 0
    assert [n for n, _ in layers_of(graph)] == ["conv1", "pool1", "conv2", "avgpool1", "fc1", "gap"]
    # The linear head becomes a 1x1 conv of the same name and outputs, without the default
    # relu, and global pooling follows it; on the 1x1 map the parameters are the same: 6*4 + 4.
    assert_params(graph, {"fc1": ("conv", {"filters": 4, "kernel": 1, "activation": "none", "bias": True})})
    assert graph.node("gap").type == "global_avg_pool" and graph.node("gap").inputs == ("fc1",)
    assert infer(graph).info("fc1").params == 6 * 4 + 4


# -- (c) base: merges train: key by key ----------------------------------------------------
TRAINED_BASE = """\
name: parent
input: {channels: 3, size: 8}
classes: 4
defaults:
  conv: {kernel: 3, padding: same, activation: relu}
layers:
  - {type: conv, filters: 4}
  - {type: conv, filters: 4, kernel: 1, activation: none}
  - {type: global_avg_pool}
train:
  dataset: synthetic
  dataset_options: {size: 64}
  epochs: 3
  batch_size: 32
  lr: 0.1
  augment: {flip: true, translate: 1}
"""


def test_base_merges_train_key_by_key(tmp_path):
    (tmp_path / "parent.yaml").write_text(TRAINED_BASE)
    (tmp_path / "child.yaml").write_text(
        "base: parent.yaml\nname: child\n"
        "train:\n  lr: 0.05\n  augment: {translate: 2}\n"
        "defaults:\n  conv: {activation: none}\n"
    )
    (tmp_path / "grandchild.yaml").write_text("base: child.yaml\nname: grandchild\ntrain: {epochs: 7}\n")

    child = load(str(tmp_path / "child.yaml"))
    assert child.train == {
        "dataset": "synthetic",
        "dataset_options": {"size": 64},
        "epochs": 3,
        "batch_size": 32,
        "lr": 0.05,  # the only key the child changes
        "augment": {"flip": True, "translate": 2},  # nested: flip kept, translate changed
    }
    assert child.defaults["conv"] == {"kernel": 3, "padding": "same", "activation": "none"}
    cfg = recipe_of(child.train)
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.augment.flip, cfg.augment.translate) == (0.05, 3, 32, True, 2)

    grandchild = load(str(tmp_path / "grandchild.yaml"))
    assert grandchild.train == child.train | {"epochs": 7}
    overridden = load(str(tmp_path / "child.yaml"), ["train.batch_size=16"])
    assert overridden.train == child.train | {"batch_size": 16}
    assert load(str(tmp_path / "parent.yaml")).train["lr"] == 0.1  # the base itself is untouched


# -- (d) --set into the layer list ---------------------------------------------------------
def test_set_by_list_index(write_spec):
    path = write_spec(BASE)
    graph = load(path, ["layers.2.filters=5"])  # the third entry: conv2
    assert graph.node("conv2").op.filters == 5
    assert infer(graph).shapes["conv2"] == (5, 2, 2)
    assert infer(graph).info("fc1").params == 5 * 4 + 4  # flatten 5*1*1 -> 4 units
    by_name = load(path, ["layers.conv2.filters=5"])
    assert [n.op for n in by_name.nodes] == [n.op for n in graph.nodes]
    last = load(path, ["layers.5.units=4", "layers.0.kernel=[1,3]"])  # the last index is len - 1
    assert last.node("conv1").op.kernel_hw() == (1, 3)


@pytest.mark.parametrize("index", [6, 7, 100])  # BASE has 6 layers: indices 0..5
def test_set_out_of_range_index_is_refused(write_spec, capsys, index):
    path = write_spec(BASE)
    assignment = f"layers.{index}.filters=8"
    with pytest.raises(UserError) as refused:
        load(path, [assignment])
    assert str(refused.value) == f"--set {assignment}: no such key path 'layers.{index}.filters' in the spec"
    assert main(["check", path, "--set", assignment]) == 2
    assert capsys.readouterr().err == f"error: {refused.value}\n"


# -- (e) lint: border drop and rounding ----------------------------------------------------
def lint_spec(layer: str, h: int, w: int) -> str:
    return f"""\
name: lint
input: {{channels: 1, size: [{h}, {w}]}}
classes: 2
layers:
  - {{name: x, {layer}}}
  - {{type: flatten}}
  - {{type: linear, units: 2}}
"""


def lint_messages(text: str) -> list[str]:
    return [d.message for d in check(text).warnings if d.label == "x"]


def unseen_rows_by_gradient(conv: nn.Module, h: int, w: int) -> tuple[int, int]:
    """Trailing rows and columns of the input that get no gradient from any output."""
    nn.init.ones_(conv.weight)
    image = torch.ones(1, 1, h, w, requires_grad=True)
    conv(image).sum().backward()
    grad = image.grad[0, 0]
    rows = int(grad.abs().sum(dim=1).nonzero().max()) + 1
    cols = int(grad.abs().sum(dim=0).nonzero().max()) + 1
    return h - rows, w - cols


@pytest.mark.parametrize(
    ("layer", "make", "hw", "expected"),
    [
        # 3x3/2 valid on 8: out (8 - 3)//2 + 1 = 3, last window ends at (3-1)*2 + 2 = 6 of 0..7: 1 unseen
        ("type: conv, filters: 1, kernel: 3, stride: 2", lambda: nn.Conv2d(1, 1, 3, 2), (8, 8), "1 rows (windows of 3, stride 2, padding 0 stop at index 6 of 8) and 1 columns"),
        # on 9: out 4, last window ends at 6 + 2 = 8 = the last index: nothing lost
        ("type: conv, filters: 1, kernel: 3, stride: 2", lambda: nn.Conv2d(1, 1, 3, 2), (9, 9), None),
        # padding 1 on 8: out (8 + 2 - 3)//2 + 1 = 4, last ends at 3*2 - 1 + 2 = 7: nothing lost
        ("type: conv, filters: 1, kernel: 3, stride: 2, padding: 1", lambda: nn.Conv2d(1, 1, 3, 2, 1), (8, 8), None),
        # 3x3/3 pad 1 on 9: out (9 + 2 - 3)//3 + 1 = 3, last ends at 2*3 - 1 + 2 = 7 of 0..8: 1 unseen
        ("type: conv, filters: 1, kernel: 3, stride: 3, padding: 1", lambda: nn.Conv2d(1, 1, 3, 3, 1), (9, 9), "1 rows (windows of 3, stride 3, padding 1 stop at index 7 of 9)"),
        # rows only: [3, 1] kernel, stride [3, 1] on 8x5: rows out (8-3)//3 + 1 = 2, last at 3 + 2 = 5: 2 unseen; columns all seen
        ("type: conv, filters: 1, kernel: [3, 1], stride: [3, 1]", lambda: nn.Conv2d(1, 1, (3, 1), (3, 1)), (8, 5), "2 rows (windows of 3, stride 3, padding 0 stop at index 5 of 8) — "),
        # dilation 2 (k_eff 5), stride 2, on 8: out (8 - 5)//2 + 1 = 2, last at 2 + 4 = 6: 1 unseen
        ("type: conv, filters: 1, kernel: 3, stride: 2, dilation: 2", lambda: nn.Conv2d(1, 1, 3, 2, dilation=2), (8, 8), "1 rows (windows of 5, stride 2, padding 0 stop at index 6 of 8)"),
    ],
)  # fmt: skip
def test_border_drop_warning(layer, make, hw, expected):
    lost_rows, lost_cols = unseen_rows_by_gradient(make(), *hw)
    found = [m for m in lint_messages(lint_spec(layer, *hw)) if "never sees" in m]
    if expected is None:
        assert (lost_rows, lost_cols) == (0, 0)
        assert found == []
    else:
        assert lost_rows == int(expected.split()[0])
        assert len(found) == 1 and f"never sees the last {expected}" in found[0]
        assert ("columns" in found[0]) == (lost_cols > 0)


def torch_pool_sizes(k: int, s: int, p: int, h: int, w: int) -> tuple[tuple, tuple]:
    x = torch.zeros(1, 1, h, w)
    floor = nn.MaxPool2d(k, s, p, ceil_mode=False)(x).shape[2:]
    ceil = nn.MaxPool2d(k, s, p, ceil_mode=True)(x).shape[2:]
    return tuple(floor), tuple(ceil)


@pytest.mark.parametrize(
    ("k", "s", "p", "h", "expected"),
    [
        (3, 2, 0, 8, (3, 4)),  # floor (8-3)//2+1 = 3; ceil ceil(5/2)+1 = 4
        (3, 2, 0, 9, None),  # (9-3)/2+1 = 4 either way
        (3, 2, 1, 8, (4, 5)),  # floor (8+2-3)//2+1 = 4; ceil ceil(7/2)+1 = 5, its start 8 < 8 + 1: kept
        # ceil((7+2-2)/2)+1 = 5 but that window would start at 8 >= 7 + 1, in the padding:
        # PyTorch drops it, so ceil gives 4 like floor and nothing depends on the rounding.
        (2, 2, 1, 7, None),
    ],
)
@pytest.mark.parametrize("ceil_mode", [None, False, True])
def test_rounding_warning(k, s, p, h, expected, ceil_mode):
    floor, ceil = torch_pool_sizes(k, s, p, h, h)
    assert (floor != ceil) == (expected is not None)
    layer = f"type: max_pool, kernel: {k}, stride: {s}, padding: {p}"
    if ceil_mode is not None:
        layer += f", ceil_mode: {str(ceil_mode).lower()}"
    found = [m for m in lint_messages(lint_spec(layer, h, h)) if "rounding" in m]
    if expected is None or ceil_mode is not None:  # a stated ceil_mode is a choice made: no warning
        assert found == []
    else:
        floor_size, ceil_size = expected
        assert (floor[0], ceil[0]) == expected
        assert len(found) == 1
        assert f"floor gives {floor_size}" in found[0] and f"ceil gives {ceil_size}" in found[0]
        assert "this spec uses floor" in found[0]


def test_rounding_warning_on_the_width_alone():
    floor, ceil = torch_pool_sizes(3, 2, 0, 9, 8)
    assert floor == (4, 3) and ceil == (4, 4)  # height (9-3)/2+1 = 4 both; width (8-3)//2+1 = 3 vs ceil 4
    found = [m for m in lint_messages(lint_spec("type: max_pool, kernel: 3, stride: 2", 9, 8)) if "rounding" in m]
    assert len(found) == 1 and "floor gives 4x3" in found[0] and "ceil gives 4x4" in found[0]


# -- (f) grouped convolutions through transform --weights ----------------------------------


def test_grouped_convs_keep_their_exact_tensors_through_transform(tmp_path, write_spec, capsys):
    model = specc_torch.build(load(GROUPED), seed=0)
    g = torch.Generator().manual_seed(4)
    state = {
        k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v) for k, v in model.state_dict().items()
    }
    # By hand: g1 (8, 4/2, 3, 3), dw (8, 8/8, 3, 3), g2 (8, 8/4, 1, 1), fc (3, 8)
    assert {k: tuple(v.shape) for k, v in state.items() if k.endswith("weight")} == {
        "g1.weight": (8, 2, 3, 3), "bn.weight": (8,), "dw.weight": (8, 1, 3, 3), "g2.weight": (8, 2, 1, 1), "fc.weight": (3, 8),
    }  # fmt: skip
    source = tmp_path / "grouped.pt"
    torch.save(state, source)
    target, new_spec = tmp_path / "pooled.pt", tmp_path / "pooled.yaml"
    argv = ["transform", write_spec(GROUPED), "--replace-stride", "maxpool", "--fc-to-conv"]
    argv += ["--weights", str(source), "--weights-out", str(target), "-o", str(new_spec)]
    assert main(argv) == 0, capsys.readouterr().err

    carried = torch.load(target, weights_only=True)
    assert carried.keys() == state.keys()
    for key, tensor in state.items():
        if key == "fc.weight":  # linear (3, 8) -> 1x1 conv (3, 8, 1, 1): same values
            assert torch.equal(carried[key], tensor.reshape(3, 8, 1, 1))
        else:
            assert torch.equal(carried[key], tensor), key
    # The new spec really holds the strided convs at stride 1 with their groups, plus the pools.
    graph = load(str(new_spec))
    assert (graph.node("g1").op.groups, graph.node("g1").op.stride_hw()) == (2, (1, 1))
    assert (graph.node("dw").op.groups, graph.node("dw").op.stride_hw()) == (8, (1, 1))
    assert graph.node("g1_pool").type == graph.node("dw_pool").type == "max_pool"
    rebuilt = specc_torch.build(graph, seed=0)
    rebuilt.load_state_dict(carried, strict=True)
