"""Less common branches, each checked against an expectation written out by hand (issue #10).

(a) the dataset-pickle guard and the checkpoint guard refuse every dangerous global, with
    their exact messages, and nothing runs; plain-data pickles still load;
(b) every `specc transform` option changes exactly what it should;
(c) `base:` merges `train:` key by key;  (d) `--set` into the layer list, and out of range;
(e) the border-drop and rounding lint warnings, where they must and must not fire;
(f) grouped convolutions keep their exact tensors through `transform --weights`;
(g) checkpoint remapping refuses a same-rank reshape.
"""

from __future__ import annotations

import fractions
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import specc_torch
from specc.api import check, load
from specc.cli import main
from specc.errors import UserError
from specc.shapes import infer
from specc.train.config import recipe_of
from specc.train.data.safe_pickle import load_pickle
from specc.transforms.weights import remap_state
from specc_torch.weights import read_checkpoint

GUARD_TAIL = "a dataset pickle may only contain numpy arrays and plain containers"


# -- (a) the dataset-pickle guard ----------------------------------------------------------
def _unicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def global_call(module: str, name: str, args: tuple, stack: bool) -> bytes:
    """A pickle that calls `module.name(*args)` (str arguments, or one nested tuple of str):
    GLOBAL (protocol 0 text form) or STACK_GLOBAL (protocol 4), then REDUCE."""

    def arg(value) -> bytes:
        if isinstance(value, tuple):
            return b"(" + b"".join(arg(v) for v in value) + b"t"  # MARK ... TUPLE
        return _unicode(value) if stack else b"V" + value.encode("raw_unicode_escape") + b"\n"

    if stack:
        head = b"\x80\x04" + _unicode(module) + _unicode(name) + b"\x93"  # PROTO 4, STACK_GLOBAL
    else:
        head = b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL
    return head + b"(" + b"".join(arg(a) for a in args) + b"tR."  # MARK args TUPLE REDUCE STOP


def dangerous_calls(marker: Path) -> list[tuple[str, str, tuple]]:
    """(module, name, args): those that can are written to create `marker` if they ever run."""
    touch = f"open({str(marker)!r}, 'w').close()"
    return [
        ("builtins", "eval", (touch,)),
        ("builtins", "exec", (touch,)),
        ("builtins", "open", (str(marker), "w")),
        ("builtins", "getattr", ("text", "upper")),
        ("builtins", "__import__", ("os",)),
        ("builtins", "compile", ("1", "f", "eval")),
        ("builtins", "setattr", ("a", "b", "c")),
        ("builtins", "globals", ()),
        ("__builtin__", "eval", (touch,)),  # the Python 2 spelling CIFAR's own pickles use
        ("os", "system", (f"touch {marker}",)),
        ("posix", "system", (f"touch {marker}",)),
        ("subprocess", "Popen", (("touch", str(marker)),)),
        ("functools", "partial", ("print",)),
    ]


@pytest.mark.parametrize("stack", [False, True], ids=["GLOBAL", "STACK_GLOBAL"])
def test_dataset_pickle_refuses_every_dangerous_global(tmp_path, stack):
    # The crafted pickles really run when loaded without the guard (each creates `witness`).
    witness = tmp_path / "witness"
    for module, name, args in dangerous_calls(witness):
        if name in ("eval", "exec", "open", "system", "Popen") and not (stack and module == "__builtin__"):
            result = pickle.loads(global_call(module, name, args, stack))
            if name == "Popen":
                result.wait()
            assert witness.exists(), f"{module}.{name}"
            witness.unlink()
    assert pickle.loads(global_call("builtins", "getattr", ("text", "upper"), stack))() == "TEXT"

    marker = tmp_path / "ran"
    for module, name, args in dangerous_calls(marker):
        data = global_call(module, name, args, stack)
        path = tmp_path / f"{module}.{name}.pkl"
        path.write_bytes(data)
        with pytest.raises(UserError) as refused:
            load_pickle(path)
        assert str(refused.value) == f"{path}: refused to unpickle global '{module}.{name}': {GUARD_TAIL}"
        assert not marker.exists(), f"{module}.{name} ran"


def test_a_dangerous_global_inside_a_cifar_shaped_dict_is_refused(tmp_path):
    # {b'data': <os.system call>, b'labels': []} in protocol 2, the global hidden as a value.
    evil = global_call("os", "system", (f"touch {tmp_path / 'ran'}",), stack=False)[:-1]  # without STOP
    data = b"\x80\x02}(U\x04data" + evil + b"U\x06labels]u."  # EMPTY_DICT MARK key value key value SETITEMS
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    with pytest.raises(UserError, match=r"refused to unpickle global 'os\.system'"):
        load_pickle(path)
    assert not (tmp_path / "ran").exists()


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's `str` (SHORT_BINSTRING/BINSTRING), as the CIFAR files do."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _cifar_like() -> dict:
    rng = np.random.default_rng(0)
    return {
        b"batch_label": b"training batch 1 of 5",
        b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
        b"labels": [3, 1, 4],
        b"filenames": [b"a.png", b"b.png", b"c.png"],
    }


def _assert_same_batch(loaded: dict, original: dict) -> None:
    assert loaded.keys() == original.keys()
    np.testing.assert_array_equal(loaded[b"data"], original[b"data"])
    assert loaded[b"data"].dtype == np.uint8
    assert loaded[b"labels"] == original[b"labels"] and loaded[b"filenames"] == original[b"filenames"]


@pytest.mark.parametrize("numpy_module", [b"numpy.core.multiarray", b"numpy._core.multiarray"])
def test_python2_protocol2_cifar_pickle_loads(tmp_path, numpy_module):
    original = _cifar_like()
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(original)
    # Python 2 / numpy 1 name the reconstructor numpy.core.multiarray, numpy 2 numpy._core.
    data = buffer.getvalue().replace(b"numpy._core.multiarray\n", numpy_module + b"\n")
    data = data.replace(b"numpy.core.multiarray\n", numpy_module + b"\n")
    assert b"c" + numpy_module + b"\n_reconstruct\n" in data
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    _assert_same_batch(load_pickle(path), original)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_modern_pickles_of_plain_data_load(tmp_path, protocol):
    original = _cifar_like() | {b"set": {1, 2}, b"frozen": frozenset({3}), b"tuple": (1, b"x")}
    path = tmp_path / "batch.pkl"
    path.write_bytes(pickle.dumps(original, protocol=protocol))
    loaded = load_pickle(path)
    _assert_same_batch(loaded, original)
    assert loaded[b"set"] == {1, 2} and loaded[b"frozen"] == frozenset({3}) and loaded[b"tuple"] == (1, b"x")


def test_python3_protocol2_pickle_of_plain_data_loads(tmp_path):
    original = _cifar_like()
    path = tmp_path / "batch.pkl"
    path.write_bytes(pickle.dumps(original, protocol=2))
    _assert_same_batch(load_pickle(path), original)


# -- (a) the checkpoint guard --------------------------------------------------------------
class _RunsCommand:
    """Pickles as a call to os.system: what a malicious checkpoint holds."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


HOLDS_OBJECTS = (
    "holds Python objects other than tensors and plain data — refused (loading it would run arbitrary code)"
)


@pytest.mark.parametrize("kind", ["os.system", "fraction"])
def test_checkpoint_with_pickled_objects_is_refused_in_one_line(tmp_path, write_spec, capsys, kind):
    marker = tmp_path / "ran"
    extra = _RunsCommand(f"touch {marker}") if kind == "os.system" else fractions.Fraction(1, 3)
    model = specc_torch.build(load(GROUPED), seed=0)
    path = tmp_path / "evil.pt"
    torch.save({"format": "specc-checkpoint-v1", "model": model.state_dict(), "extra": extra}, path)

    with pytest.raises(UserError) as refused:
        read_checkpoint(str(path))
    assert str(refused.value) == f"{path}: {HOLDS_OBJECTS}"
    # Every command that reads a checkpoint: compile, transform and train --resume.
    spec = write_spec(GROUPED)
    assert main(["compile", spec, "--weights", str(path), "--target", "onnx", "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {path}: {HOLDS_OBJECTS}\n"
    argv = ["transform", spec, "--replace-stride", "maxpool", "--weights", str(path)]
    assert main(argv + ["--weights-out", str(tmp_path / "new.pt")]) == 2
    assert capsys.readouterr().err == f"error: {path}: {HOLDS_OBJECTS}\n"
    assert main(["train", "--resume", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path}: {HOLDS_OBJECTS}\n"
    assert not marker.exists()
    assert not (tmp_path / "new.pt").exists()


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
GROUPED = """\
name: grouped
input: {channels: 4, size: 8}
classes: 3
layers:
  - {name: g1, type: conv, filters: 8, kernel: 3, padding: same, groups: 2, stride: 2}
  - {name: bn, type: batch_norm}
  - {name: dw, type: conv, filters: 8, kernel: 3, padding: same, groups: 8, stride: 2}
  - {name: g2, type: conv, filters: 8, kernel: 1, groups: 4, bias: false}
  - {type: global_avg_pool}
  - {name: fc, type: linear, units: 3}
"""


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


# -- (g) checkpoint remapping refuses a same-rank reshape ----------------------------------
def one_conv(kernel: str) -> str:
    return f"""\
name: k
input: {{channels: 3, size: 4}}
classes: 2
layers:
  - {{name: c, type: conv, filters: 2, kernel: {kernel}}}
  - {{type: global_avg_pool}}
"""


def test_remap_refuses_a_same_rank_reshape():
    source, target = infer(load(one_conv("[1, 4]"))), infer(load(one_conv("[2, 2]")))
    # Same rank (4) and the same number of values (2*3*1*4 = 2*3*2*2 = 24), but another layout.
    state = {"c.weight": torch.arange(24.0).reshape(2, 3, 1, 4), "c.bias": torch.zeros(2)}
    with pytest.raises(UserError) as refused:
        remap_state(state, source, target, "a test step", "ckpt.pt")
    assert str(refused.value) == (
        "--weights: c.weight changes shape [2, 3, 1, 4] -> [2, 3, 2, 2] under a test step;"
        " trained weights cannot be carried through it"
    )


def test_remap_refuses_another_size_and_accepts_a_new_rank():
    small = {"c.weight": torch.zeros(2, 3, 1, 1), "c.bias": torch.zeros(2)}
    with pytest.raises(UserError, match=r"c\.weight changes shape \[2, 3, 1, 1\] -> \[2, 3, 2, 2\]"):
        remap_state(small, infer(load(one_conv("1"))), infer(load(one_conv("2"))), "step", "ckpt.pt")
    head = """\
name: h
input: {channels: 3, size: 1}
classes: 2
layers:
  - {type: flatten}
  - {name: c, type: linear, units: 2}
"""
    conv_head = one_conv("1").replace("size: 4", "size: 1")
    weight = torch.arange(6.0).reshape(2, 3)
    state = {"c.weight": weight, "c.bias": torch.ones(2)}
    out = remap_state(state, infer(load(head)), infer(load(conv_head)), "s", "f")
    assert torch.equal(out["c.weight"], weight.reshape(2, 3, 1, 1)) and torch.equal(out["c.bias"], torch.ones(2))
