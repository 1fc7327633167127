"""Numerics with oracles of their own (issue #10): every parameter and statistic randomised.

(a) batch_norm folding: `specc compile --weights` of random weights (nonzero conv and linear
    biases, random gamma/beta/running mean/var, a non-default eps) run in onnxruntime must
    give what a hand-written torch.nn network with the same state_dict gives in eval mode.
(b) batch_norm momentum: one training-mode step updates the running statistics by
    `(1 - m) * old + m * batch statistic`, computed here with torch.mean / torch.var.
(c) distributed resume: each of two gloo processes gets back its own RNG state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import specc_torch
from specc.api import load
from specc.cli import main
from specc.training.distributed import free_port
from tests.conftest import ROOT

# -- (a) batch_norm folding ----------------------------------------------------------------
FOLD_SPEC = """\
name: fold
input: {channels: 3, size: 6}
classes: 4
layers:
  - {name: c1, type: conv, filters: 4, kernel: 3, padding: same}
  - {name: bn1, type: batch_norm}
  - {type: relu}
  - {name: c2, type: conv, filters: 6, kernel: 3, stride: 2, padding: 1, groups: 2, bias: false}
  - {name: bn2, type: batch_norm, eps: 0.001}
  - {name: c3, type: conv, filters: 6, kernel: 1}
  - {name: bn3, type: batch_norm, affine: false}
  - {type: flatten}
  - {name: f1, type: linear, units: 8}
  - {name: bn4, type: batch_norm}
  - {type: relu}
  - {name: bn5, type: batch_norm}
  - {name: f2, type: linear, units: 4}
"""
FOLDABLE = ("bn1", "bn2", "bn3", "bn4")  # bn5 reads a relu: it stays a BatchNormalization node


class HandWritten(nn.Module):
    """FOLD_SPEC written out in plain torch.nn: the oracle."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(6, eps=1e-3)
        self.c3 = nn.Conv2d(6, 6, 1)
        self.bn3 = nn.BatchNorm2d(6, affine=False)
        self.f1 = nn.Linear(6 * 3 * 3, 8)  # 6x6 -> (6 + 2 - 3)//2 + 1 = 3
        self.bn4 = nn.BatchNorm1d(8)
        self.bn5 = nn.BatchNorm1d(8)
        self.f2 = nn.Linear(8, 4)

    def forward(self, x):  # (B, 3, 6, 6)
        x = torch.relu(self.bn1(self.c1(x)))
        x = self.bn3(self.c3(self.bn2(self.c2(x))))  # (B, 6, 3, 3)
        x = torch.relu(self.bn4(self.f1(x.flatten(1))))
        return self.f2(self.bn5(x))  # (B, 4)


def randomised(model: nn.Module, seed: int) -> nn.Module:
    """Every parameter and running statistic drawn at random (variances kept positive)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) * 1.5 + 0.05  # in [0.05, 1.55)
        elif key.endswith("running_mean"):
            state[key] = torch.randn(value.shape, generator=g) * 2
        else:
            state[key] = torch.randn(value.shape, generator=g)  # biases nonzero, gamma of both signs
    model.load_state_dict(state, strict=True)
    return model.eval()


def onnx_logits(path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("fold", [True, False])
def test_batch_norm_folding_matches_hand_written_torch(tmp_path, write_spec, capsys, fold):
    reference = randomised(HandWritten(), seed=11)
    assert all(float(reference.get_parameter(f"{n}.bias").detach().abs().min()) > 0 for n in ("c1", "c3", "f1", "f2"))
    checkpoint = tmp_path / "random.pt"
    torch.save(reference.state_dict(), checkpoint)
    spec = write_spec(FOLD_SPEC)
    out = tmp_path / ("folded" if fold else "unfolded")
    argv = ["compile", spec, "--weights", str(checkpoint), "--target", "onnx", "-o", str(out)]
    assert main(argv + ([] if fold else ["--no-fold"])) == 0, capsys.readouterr().err

    x = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = reference(x).numpy()
    got = onnx_logits(out / "fold.onnx", x.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    # The folding really happened (or really did not): count the BatchNormalization nodes.
    ops = [node.op_type for node in onnx.load(out / "fold.onnx").graph.node]
    assert ops.count("BatchNormalization") == (1 if fold else 5)


def test_specc_torch_model_matches_hand_written_torch_in_eval_mode():
    reference = randomised(HandWritten(), seed=5)
    model = specc_torch.build(load(FOLD_SPEC), seed=0)
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-6)


# -- (b) batch_norm momentum ---------------------------------------------------------------
MOMENTUM_SPEC = """\
name: momentum
input: {channels: 3, size: 4}
classes: 2
layers:
  - {name: bn_map, type: batch_norm, momentum: 0.3}
  - {type: flatten}
  - {name: bn_flat, type: batch_norm, momentum: 0.7, eps: 0.01, affine: false}
  - {type: linear, units: 2}
"""


def test_batch_norm_momentum_after_one_training_step():
    model = specc_torch.build(load(MOMENTUM_SPEC), seed=0).train()
    x = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1  # (B, C, H, W)
    model(x)

    # PyTorch's convention: running = (1 - m) * running + m * batch, from mean 0 and variance 1;
    # the running variance takes the unbiased (n - 1) batch variance.
    m = 0.3
    mean = x.mean(dim=(0, 2, 3))  # (C,)
    var = x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(model.bn_map.running_mean, (1 - m) * 0 + m * mean)
    torch.testing.assert_close(model.bn_map.running_var, (1 - m) * 1 + m * var)

    # bn_flat sees the normalised map (gamma 1, beta 0 at the start), flattened to 48 features,
    # normalised with the biased batch variance and eps 1e-5.
    biased = x.var(dim=(0, 2, 3), unbiased=False)
    y = ((x - mean[None, :, None, None]) / torch.sqrt(biased[None, :, None, None] + 1e-5)).flatten(1)  # (B, 48)
    m = 0.7
    torch.testing.assert_close(model.bn_flat.running_mean, (1 - m) * 0 + m * y.mean(dim=0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        model.bn_flat.running_var, (1 - m) * 1 + m * y.var(dim=0, unbiased=True), rtol=1e-5, atol=1e-6
    )
    assert int(model.bn_map.num_batches_tracked) == 1


def test_batch_norm_eps_is_used_in_eval_mode():
    # bn_flat has eps 0.01: with running variance 0.02 the scale is 1/sqrt(0.03), not 1/sqrt(0.02).
    model = specc_torch.build(load(MOMENTUM_SPEC), seed=0).eval()
    with torch.no_grad():
        model.bn_flat.running_var.fill_(0.02)
        model.bn_flat.running_mean.fill_(0.5)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    _, captured = model(x, capture={"flatten1", "bn_flat"})
    flat = captured["flatten1"]
    torch.testing.assert_close(captured["bn_flat"], (flat - 0.5) / (0.02 + 0.01) ** 0.5)


# -- (c) distributed resume: each rank's own RNG state -------------------------------------
RNG_SPEC = """\
name: rng
input: {channels: 3, size: 8}
classes: 4
layers:
  - {type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {type: dropout, rate: 0.5}
  - {type: conv, filters: 4, kernel: 1}
  - {type: global_avg_pool}
train:
  dataset: synthetic
  dataset_options: {size: 64}
  epochs: 1
  batch_size: 32
  lr: 0.05
  seed: 3
"""

# One training process of two. It trains one epoch (the checkpoint is written at its end, with
# every rank's RNG state gathered), records its own RNG state with torch itself, scrambles it,
# then builds a resumed Trainer from last.pt and reports whether its state came back.
WORKER = textwrap.dedent(
    """
    import json, random, sys
    from pathlib import Path

    import numpy as np
    import torch

    from specc.api import check
    from specc.training import distributed
    from specc.training.checkpoint import read_for_resume
    from specc.training.config import recipe_of
    from specc.training.loop import RunOptions, Trainer

    spec, out, report = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    torch.set_num_threads(1)
    graph = check(spec).graph
    cfg = recipe_of(graph.train)
    graph = graph.replace(train=cfg.to_dict())
    world = distributed.world_from_env()
    device = torch.device("cpu")
    distributed.start(world, device)
    try:
        numpy_before, python_before = np.random.get_state()[1].tolist(), random.getstate()
        Trainer(graph, cfg, RunOptions(out=out, progress=False), world, device).fit()
        own = torch.get_rng_state()  # this rank's state when last.pt was written
        numpy_after, python_after = np.random.get_state()[1].tolist(), random.getstate()
        distributed.barrier(world)
        payload = read_for_resume(out)[1]
        saved = payload["rng"]["torch"]
        torch.manual_seed(12345 + world.rank)  # scramble: the resume must put it back
        torch.rand(100)
        Trainer(graph, cfg, RunOptions(out=out, resume=(out / "last.pt", payload), progress=False), world, device)
        restored = torch.get_rng_state()
    finally:
        distributed.stop(world)
    report.write_text(json.dumps({
        "rank": world.rank,
        "restored_is_own": bool(torch.equal(restored, own)),
        "saved_is_own": bool(torch.equal(saved[world.rank], own)),
        "saved_count": len(saved),
        "own_differs_from_other": bool(not torch.equal(saved[1 - world.rank], own)),
        "numpy_untouched": numpy_before == numpy_after,
        "python_untouched": python_before == python_after,
    }))
    """
)


def test_each_rank_gets_its_own_rng_state_back_after_resume(tmp_path, write_spec):
    spec = write_spec(RNG_SPEC)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(free_port())
    processes = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            OMP_NUM_THREADS="1",
            PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        command = [sys.executable, str(script), spec, str(tmp_path / "run"), str(tmp_path / f"rank{rank}.json")]
        processes.append(
            subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    try:
        outputs = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["rank"] == rank
        assert result["saved_count"] == 2
        assert result["own_differs_from_other"], "both ranks drew the same dropout masks"
        assert result["saved_is_own"], f"last.pt's rng['torch'][{rank}] is not rank {rank}'s state"
        assert result["restored_is_own"], f"rank {rank} did not get its own RNG state back"
        # Only torch's generator is saved; that is exact only while training never draws from
        # numpy's or Python's global generators.
        assert result["numpy_untouched"] and result["python_untouched"]
