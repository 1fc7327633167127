"""The training features against outside oracles: one step of `Trainer.train_step` with
label smoothing and gradient clipping against torch.nn's loss, clip_grad_norm_ and SGD;
gradient accumulation against the large batch; the EMA update against its formula; top-5
accuracy against a hand count."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from specc.api import load as load_spec
from specc.training.config import TrainConfig
from specc.training.distributed import World
from specc.training.evaluate import evaluate
from specc.training.features import Ema
from specc.training.loop import RunOptions, Trainer
from specc.training.tally import EpochTally
from tests.train.train_helpers import TINY, load, run_cli, write

# TINY without its dropout: every forward pass is a pure function of weights and batch, so a
# step can be recomputed outside specc and micro-batches can add up to the batch exactly.
NO_DROPOUT = TINY.replace("  - {type: dropout, rate: 0.2}\n", "")
TEN = NO_DROPOUT.replace("classes: 4", "classes: 10").replace("filters: 4, kernel: 1", "filters: 10, kernel: 1")


def trainer(tmp_path, spec: str = NO_DROPOUT, device: str = "cpu", **recipe) -> Trainer:
    graph = load_spec(write(tmp_path, spec))
    cfg = TrainConfig.model_validate({**(graph.train or {}), **recipe})
    graph = graph.replace(train=cfg.to_dict())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Trainer(graph, cfg, RunOptions(out=tmp_path / "run", progress=False), World(), torch.device(device))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("smoothing", "clip"), [(0.1, None), (0.0, 0.05), (0.2, 0.05)])
def test_a_step_is_torch_nn_cross_entropy_clip_grad_norm_and_sgd(tmp_path, smoothing, clip):
    t = trainer(tmp_path, label_smoothing=smoothing, clip_grad_norm=clip)
    x, y = next(iter(t.loader.batches()))
    reference = copy.deepcopy(t.model)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, weight_decay=0.001)
    loss, logits = t.train_step(x, y, 0.05)

    expected_logits = reference(x.contiguous(memory_format=torch.channels_last))
    expected = nn.CrossEntropyLoss(label_smoothing=smoothing)(expected_logits, y)
    expected.backward()
    if clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), clip)
        assert norm > clip  # the clip did act
    optimizer.step()
    assert torch.equal(logits, expected_logits.detach())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for (name, got), want in zip(t.model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7, msg=name)


def test_accumulating_micro_batches_equals_the_large_batch(tmp_path):
    """4 micro-batches of 8 vs one batch of 32, after one step (run through the CLI); and the
    loss recorded for the step is the batch's."""
    spec = write(tmp_path, NO_DROPOUT)
    runs = {}
    for parts in (1, 4):
        out = tmp_path / f"acc{parts}"
        assert run_cli("train", spec, "--out", str(out), "--max-steps", "1", "--accumulate", str(parts)) == 0
        runs[parts] = load(out / "last.pt")
    (tmp_path / "init").mkdir()
    start = trainer(tmp_path / "init").model.state_dict()  # the seeded initial weights
    flat = {parts: torch.cat([run["model"][k].flatten() for k in start]) for parts, run in runs.items()}
    before = torch.cat([v.flatten() for v in start.values()])
    # The parameters as one vector (a bias that starts at 0 has no meaningful ratio of its own)
    assert (flat[4] - flat[1]).norm() <= 1e-6 * flat[1].norm()
    # and each tensor's update, the gradient summed in another order: float rounding too
    for key, initial in start.items():
        large, micro = runs[1]["model"][key] - initial, runs[4]["model"][key] - initial
        assert large.norm() > 0 and (micro - large).norm() <= 1e-5 * large.norm(), key
    assert (flat[1] - before).norm() > 1e-3 * before.norm()  # a step that moved the weights
    assert runs[4]["partial"]["loss_sum"] == pytest.approx(runs[1]["partial"]["loss_sum"], rel=1e-6)
    assert runs[4]["config"]["accumulate"] == 4 and runs[1]["config"]["accumulate"] == 1


def test_ema_update_is_the_formula_with_its_warmup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    ema = Ema(model, decay=0.9)
    averaged = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(1, 101):  # through the warm-up (d_t < 0.9 up to t = 80) and beyond
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
            model[1].num_batches_tracked.add_(1)
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))  # tf.train.ExponentialMovingAverage's warm-up
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                averaged[key] = d * averaged[key] + (1 - d) * value
            else:
                averaged[key] = value.clone()
    assert ema.updates == 100 and ema.rate(100) == 0.9 and ema.rate(2) == 3 / 12
    for key, value in ema.model.state_dict().items():
        torch.testing.assert_close(value, averaged[key], rtol=1e-5, atol=1e-6, msg=key)
    assert ema.model.state_dict()["1.num_batches_tracked"].item() == 100
    assert not any(p.requires_grad for p in ema.model.parameters())


class Lookup(nn.Module):
    """Logits from a table, by the image's only pixel (its index): a model whose outputs the
    test knows in advance."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x.reshape(len(x)).long()]


def test_top5_accuracy_is_the_hand_count():
    generator = torch.Generator().manual_seed(3)
    table = torch.randn(40, 12, generator=generator)
    labels = torch.randint(0, 12, (40,), generator=generator)
    # by hand: the label is among the five largest scores of its row
    ranks = np.argsort(-table.numpy(), axis=1)[:, :5]
    hits = sum(int(labels[i]) in ranks[i] for i in range(40))
    images = torch.arange(40, dtype=torch.uint8).reshape(40, 1, 1, 1)
    result = evaluate(Lookup(table), images, labels, lambda x: x, classes=12, batch_size=7)
    assert result.top5_correct == hits and result.top5 == hits / 40
    assert 0 < hits < 40  # a count that can be wrong both ways
    tally = EpochTally(torch.device("cpu"), top5=True)
    for start in range(0, 40, 16):
        tally.add(start // 16, torch.tensor(1.0), table[start : start + 16], labels[start : start + 16])
    assert tally.sync(World()).top5 == hits / 40
    assert evaluate(Lookup(table[:, :4]), images, labels % 4, lambda x: x, classes=4).top5 is None


def test_top5_is_recorded_with_ten_classes_only(tmp_path, capsys):
    spec = write(tmp_path, TEN.replace("epochs: 3", "epochs: 1"))
    assert run_cli("train", spec, "--out", str(tmp_path / "ten"), "--limit-batches", "4") == 0
    row = json.loads((tmp_path / "ten" / "metrics.jsonl").read_text())
    assert 0 <= row["train_acc"] <= row["train_top5"] <= 1 and row["test_acc"] <= row["test_top5"] <= 1
    header = (tmp_path / "ten" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["epoch", "train_loss", "train_acc", "train_top5", "test_loss", "test_acc", "test_top5"]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch 1/1"))
    assert f"top5 {100 * row['test_top5']:.2f}%" in line
    assert (
        run_cli("train", write(tmp_path, TINY, "four.yaml"), "--out", str(tmp_path / "four"), "--max-steps", "2") == 0
    )
    assert "correct5" not in load(tmp_path / "four" / "last.pt")["partial"]


def test_specc_train_sets_the_openmp_wait_policy_before_torch_is_imported():
    """OMP_WAIT_POLICY is read when torch loads its OpenMP runtime: `specc train` sets it
    first (unless the user did), and nothing it imports before that imports torch."""
    import subprocess
    import sys

    from specc.training.config import prepare_process_env

    environ = {"PATH": "/bin"}
    assert prepare_process_env(environ) == {"OMP_WAIT_POLICY": "PASSIVE"} and environ["OMP_WAIT_POLICY"] == "PASSIVE"
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert prepare_process_env(mine) == {} and mine == {"OMP_WAIT_POLICY": "ACTIVE"}
    code = "import sys, specc.cli, specc.commands.train, specc.training.config; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.cuda
def test_the_features_run_on_the_gpu_under_fp16_and_its_grad_scaler(tmp_path):
    """Accumulation, clipping (of the unscaled gradients) and EMA with fp16 autocast: every
    tensor on the GPU, the EMA updated per step, the weights moved, nothing synced per step."""
    t = trainer(tmp_path, device="cuda", precision="fp16", clip_grad_norm=1.0, accumulate=2, ema=0.9)
    x, y = next(iter(t.loader.batches()))
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    for _ in range(4):
        loss, logits = t.train_step(x, y, 0.05)
    assert x.is_cuda and loss.is_cuda and logits.shape == (len(y), 4)
    assert t.ema is not None and t.ema.updates == 4 and all(v.is_cuda for v in t.ema.model.state_dict().values())
    assert torch.isfinite(loss) and any(not torch.equal(before[k], v) for k, v in t.model.state_dict().items())
    grads = [p.grad for p in t.model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert not torch.isfinite(norm) or norm <= 1.0 + 1e-3  # clipped after unscaling (or a skipped step)
