"""Weights in and out of the PyTorch backend: numpy export for the ONNX emitter, atomic
checkpoints, and the one-line refusals of `load_weights`."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

import specc
from specc import build
from specc.emit import spec_hash
from specc.errors import UserError
from specc_torch.weights import (
    CHECKPOINT_FORMAT,
    checkpoint_payload,
    load_weights,
    save_checkpoint,
    state_dict_numpy,
)


def _spec(name: str, first: int, tail: str = "conv") -> str:
    last = (
        "  - {name: conv2, type: conv, filters: 2, kernel: 1}\n  - {name: gap, type: global_avg_pool}"
        if tail == "conv"
        else "  - {name: gap, type: global_avg_pool}\n  - {name: fc, type: linear, units: 2}"
    )
    return f"""name: {name}
input: {{channels: 3, size: 6}}
classes: 2
layers:
  - {{name: conv1, type: conv, filters: {first}, kernel: 3, activation: relu}}
  - {{name: bn1, type: batch_norm}}
{last}
"""


TINY_A, TINY_B = _spec("tiny_a", 4), _spec("tiny_b", 8, tail="fc")


def test_state_dict_numpy_is_float32_contiguous_copies_with_running_stats():
    model = build(TINY_A).to(memory_format=torch.channels_last)
    arrays = state_dict_numpy(model)
    assert list(arrays) == [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert "bn1.running_mean" in arrays and "bn1.running_var" in arrays
    for key, array in arrays.items():
        assert array.dtype == np.float32 and array.flags["C_CONTIGUOUS"], key
        assert np.array_equal(array, model.state_dict()[key].numpy()), key
    with torch.no_grad():
        model.conv1.weight.add_(1)
    assert not np.array_equal(arrays["conv1.weight"], model.conv1.weight.detach().numpy())


def test_a_checkpoint_round_trips_atomically(tmp_path):
    model = build(TINY_A, seed=5)
    path = tmp_path / "runs" / "ckpt.pt"
    save_checkpoint(path, checkpoint_payload(model, epoch=7))
    save_checkpoint(path, checkpoint_payload(model, epoch=8))  # replaces the first one
    assert os.listdir(path.parent) == ["ckpt.pt"]  # no temporary file left behind
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT and payload["epoch"] == 8
    assert payload["spec_hash"] == spec_hash(model.graph)
    state = load_weights(path, model.graph)
    fresh = build(TINY_A, seed=6)
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.state_dict()[k], model.state_dict()[k]) for k in state)


def test_a_plain_state_dict_also_loads_even_under_a_wrapper_prefix(tmp_path):
    model = build(TINY_A)
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pt"
    torch.save(model.state_dict(), plain)
    state = {f"_orig_mod.{k}": v for k, v in model.state_dict().items() if "num_batches" not in k}
    torch.save(state, wrapped)
    assert list(load_weights(plain, model.graph)) == list(model.state_dict())
    assert set(load_weights(wrapped, model.graph)) == set(model.state_dict())


def test_a_failed_save_leaves_the_old_checkpoint_and_no_temporary(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "n": 1})
    with pytest.raises(TypeError, match="cannot pickle"):
        save_checkpoint(path, {"bad": threading.Lock()})
    assert os.listdir(tmp_path) == ["ckpt.pt"] and torch.load(path, weights_only=True)["n"] == 1


def test_missing_directory_and_corrupt_files_are_one_line_errors(tmp_path):
    graph = specc.load(TINY_A)
    cases = {tmp_path / "nope.pt": "no such file", tmp_path: "is a directory, not a checkpoint file"}
    good = tmp_path / "good.pt"
    save_checkpoint(good, checkpoint_payload(build(TINY_A)))
    truncated, garbage = tmp_path / "truncated.pt", tmp_path / "garbage.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    garbage.write_bytes(b"not a checkpoint at all\n" * 10)
    for path in (truncated, garbage):
        cases[path] = "not a readable PyTorch checkpoint (truncated or corrupt?)"
    for path, message in cases.items():
        with pytest.raises(UserError) as info:
            load_weights(path, graph)
        assert str(info.value) == f"{path}: {message}"


class _Arbitrary:
    pass


def test_non_tensor_content_is_refused(tmp_path):
    graph = specc.load(TINY_A)
    cases = {
        "objects.pt": ({"model": _Arbitrary()}, "holds Python objects other than tensors and plain data"),
        "format.pt": ({"format": "other-v9", "model": {}}, "checkpoint format 'other-v9' — expected"),
        "numbers.pt": ({"epoch": 3}, "neither a state_dict nor a specc checkpoint"),
    }
    for name, (payload, message) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(UserError, match=message):
            load_weights(tmp_path / name, graph)


def test_an_architecture_mismatch_names_both_specs_and_what_differs(tmp_path):
    path = tmp_path / "a.pt"
    save_checkpoint(path, checkpoint_payload(build(TINY_A)))
    graph_a, graph_b = specc.load(TINY_A), specc.load(TINY_B)
    with pytest.raises(UserError) as info:
        load_weights(path, graph_b)
    assert str(info.value) == (
        f"{path} was trained for spec 'tiny_a' (hash {spec_hash(graph_a)[:12]}…) but the spec is 'tiny_b'"
        f" (hash {spec_hash(graph_b)[:12]}…): missing fc.weight, fc.bias; unexpected conv2.weight, conv2.bias;"
        " shape of conv1.weight 4x3x3x3 vs 8x3x3x3, conv1.bias 4 vs 8, bn1.weight 4 vs 8 (+3 more)"
    )
    torch.save(build(TINY_A).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(UserError, match=r"plain.pt does not fit spec 'tiny_b' \(hash [0-9a-f]{12}…\): missing fc"):
        load_weights(tmp_path / "plain.pt", graph_b)


def test_a_spec_that_differs_only_outside_the_weights_still_loads(tmp_path):
    path = tmp_path / "a.pt"
    save_checkpoint(path, checkpoint_payload(build(TINY_A)))
    other = specc.load(TINY_A.replace("activation: relu", "activation: leaky_relu"))
    assert set(load_weights(path, other)) == set(build(TINY_A).state_dict())
