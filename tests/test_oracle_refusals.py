"""Less common branches, each checked against an expectation written out by hand (issue #10).

(a) the dataset-pickle guard and the checkpoint guard refuse every dangerous global, with
    their exact messages, and nothing runs; plain-data pickles still load;
(g) checkpoint remapping refuses a same-rank reshape.
(b)-(f), the spec language, transforms and lint, are in tests/test_oracle_transforms.py.
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
from oracle_helpers import GROUPED

import specc_torch
from specc.api import load
from specc.cli import main
from specc.errors import UserError
from specc.shapes import infer
from specc.training.data.safe_pickle import load_pickle
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


HOLDS_OBJECTS = "holds Python objects other than tensors and plain data — refused (loading it would run arbitrary code)"


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
