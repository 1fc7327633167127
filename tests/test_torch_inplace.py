"""The PyTorch module overwrites a value in place only where that is invisible: a ReLU or a
residual add whose input nothing else reads and whose producer's backward does not need it.
Values and gradients equal an out-of-place computation; captured values keep their values."""

from __future__ import annotations

import torch

import specc
import specc_torch
from specc_torch.codegen import generate

SPEC = """
name: inplace
input: {channels: 2, size: 6}
classes: 3
layers:
  - {name: c1, type: conv, filters: 4, kernel: 3, padding: same}
  - {name: bn1, type: batch_norm}
  - {name: r1, type: relu}
  - {name: c2, type: conv, filters: 4, kernel: 3, padding: same}
  - {name: s, type: sigmoid}
  - {name: r2, type: relu}
  - {name: sum, type: add, inputs: [r2, r1]}
  - {name: r3, type: relu}
  - {name: gap, type: global_avg_pool}
  - {name: fc, type: linear, units: 3}
"""


def test_which_steps_run_in_place():
    model = specc_torch.build(specc.load(SPEC))
    inplace = {s.name for s in model.steps if s.inplace and s.kind in ("relu", "add")}
    # r1 after a batch_norm, r3 after an add: yes. r2 after a sigmoid (whose backward reads its
    # output): no. The add: its first input r2 is a ReLU's output (saved for its backward): no.
    assert inplace == {"r1", "r3"}


def test_values_and_gradients_equal_the_out_of_place_code():
    graph = specc.load(SPEC)
    model = specc_torch.build(graph, seed=1).train()
    namespace: dict = {}
    exec(compile(generate(graph), "<generated>", "exec"), namespace)  # noqa: S102 - our own generated code
    reference = namespace["Inplace"](seed=1).train()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    out, want = model(x), reference(x)
    assert torch.equal(out, want)
    out.square().sum().backward()
    want.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_a_captured_value_is_not_overwritten():
    model = specc_torch.build(specc.load(SPEC), seed=1).eval()
    x = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, captured = model(x, capture=["bn1", "r1"])
    assert (captured["bn1"] < 0).any()  # the ReLU after it did not run in place on it
    assert torch.equal(captured["r1"], captured["bn1"].clamp(min=0))
