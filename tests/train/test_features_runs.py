"""The training features in whole `specc train` runs: a run with EMA, accumulation, gradient
clipping, label smoothing, checkpoints every N steps, the best k and early stopping, resumed
from a mid-epoch and from an epoch-end checkpoint, ends bit-identical to the uninterrupted
run; early stopping stops where its rule says; TensorBoard gets per-step scalars; `specc
eval --ema` evaluates the EMA weights; the flags refuse what they cannot do."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
import torch

from specc.training import checkpoint
from tests.train.train_helpers import TINY, load, run_cli, same_weights, write

# 16 steps an epoch. Early stopping on train_loss with a min_delta no epoch can beat: epoch 1
# sets the best, epochs 2 and 3 fail to improve, so with patience 2 the run stops after 3 of 5.
SPEC = TINY.replace("epochs: 3", "epochs: 5")
FEATURES = (
    "--ema", "0.9", "--accumulate", "2", "--clip-grad-norm", "0.5", "--label-smoothing", "0.1",
    "--checkpoint-every", "5", "--save-top-k", "2", "--monitor", "test_loss",
    "--early-stopping", "train_loss", "--patience", "2", "--min-delta", "10",
)  # fmt: skip


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run, and copies of its run directory right after two of its
    checkpoints (as a SIGKILL then would leave them): mid-epoch 2 (step 20, a
    --checkpoint-every one) and at the end of epoch 2 (step 32)."""
    tmp = tmp_path_factory.mktemp("features")
    spec, out = write(tmp, SPEC), tmp / "straight"
    save, copies = checkpoint.save, {}

    def save_and_copy(path, payload):
        save(path, payload)
        step = payload["global_step"]
        if path.name == checkpoint.LAST and step in (20, 32) and step not in copies:
            copies[step] = shutil.copytree(out, tmp / f"at{step}")

    patch = pytest.MonkeyPatch()
    patch.setattr(checkpoint, "save", save_and_copy)
    try:
        assert run_cli("train", spec, "--out", str(out), *FEATURES) == 0
    finally:
        patch.undo()
    return out, copies


def test_checkpoint_every_writes_mid_epoch(straight):
    _, copies = straight
    mid = load(copies[20] / "last.pt")
    assert (mid["epoch"], mid["step"], mid["global_step"]) == (1, 4, 20)
    assert mid["partial"]["seen"] == 4 * 32 and mid["ema_updates"] == 20
    end = load(copies[32] / "last.pt")
    assert (end["epoch"], end["step"], end["ema_updates"]) == (2, 0, 32)
    assert end["early_stopping"] == {
        "monitor": "train_loss",
        "best": end["history"][0]["train_loss"],
        "best_epoch": 1,
        "wait": 1,
        "patience": 2,
    }


@pytest.mark.parametrize("at", [20, 32])
def test_resumed_runs_end_bit_identical_to_the_uninterrupted_one(straight, at, capsys):
    out, copies = straight
    assert run_cli("train", "--resume", str(copies[at])) == 0
    resumed, whole = load(copies[at] / "last.pt"), load(out / "last.pt")
    assert resumed["epoch"] == whole["epoch"] == 3  # both stopped early, after epoch 3 of 5
    assert same_weights(resumed["model"], whole["model"])
    assert same_weights(resumed["ema"], whole["ema"]) and resumed["ema_updates"] == whole["ema_updates"] == 48
    assert same_weights(resumed["optimizer"]["state"][0], whole["optimizer"]["state"][0])
    timing = ("seconds", "eval_seconds", "images_per_s", "elapsed")
    strip = [{k: v for k, v in row.items() if k not in timing} for row in whole["history"]]
    assert [{k: v for k, v in row.items() if k not in timing} for row in resumed["history"]] == strip
    for key in ("early_stopping", "top", "best"):
        assert resumed[key] == whole[key], key
    assert sorted(p.name for p in copies[at].glob("top-epoch*.pt")) == sorted(p.name for p in out.glob("top-*.pt"))


def test_early_stopping_and_the_best_k(straight, capsys):
    out, _ = straight
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # The best 2 by test loss, read off the metrics: best.pt and two top-epoch files.
    ranked = sorted(rows, key=lambda r: (r["test_loss"], r["epoch"]))[:2]
    assert sorted(p.name for p in out.glob("top-epoch*.pt")) == sorted(f"top-epoch{r['epoch']}.pt" for r in ranked)
    assert load(out / "best.pt")["epoch"] == ranked[0]["epoch"]
    assert load(out / f"top-epoch{ranked[1]['epoch']}.pt")["epoch"] == ranked[1]["epoch"]
    # A stopped run resumed with the same patience trains no further and says why.
    assert run_cli("train", "--resume", str(out)) == 0
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert load(out / "last.pt")["epoch"] == 3
    assert (
        f"stopped early after epoch 3 of 5: train_loss did not improve for 2 epochs (patience 2; best"
        f" {rows[0]['train_loss']:.4g} at epoch 1)"
    ) in last_line


def test_ema_metrics_and_eval_ema(straight, capsys):
    out, _ = straight
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"ema_test_loss", "ema_test_acc"} <= row.keys() and row["ema_test_acc"] != row["test_acc"]
    assert run_cli("eval", "--weights", str(out / "last.pt"), "--ema", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ema"] is True
    assert report["accuracy"] == row["ema_test_acc"] and report["loss"] == pytest.approx(row["ema_test_loss"])


def test_eval_ema_of_a_run_without_it_is_one_line(tmp_path, capsys):
    out = tmp_path / "plain"
    assert run_cli("train", write(tmp_path, TINY), "--out", str(out), "--max-steps", "2") == 0
    capsys.readouterr()
    assert run_cli("eval", "--weights", str(out / "last.pt"), "--ema") == 2
    assert capsys.readouterr().err == (
        f"error: --ema: {out}/last.pt holds no EMA weights (train with --ema DECAY to keep them)\n"
    )


def test_tensorboard_step_scalars_and_the_run_eta(tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert run_cli("train", write(tmp_path, TINY), "--out", str(out), "--log-every", "4") == 0
    printed = capsys.readouterr().out
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"step/loss", "step/lr", "step/images_per_s", "train/loss", "test/acc"} <= set(scalars)
    assert [e.step for e in events.Scalars("step/loss")] == list(range(4, 49, 4))
    # the 4th step (index 3 of epoch 0) of a 3-epoch cosine schedule from lr 0.1, by hand
    assert events.Scalars("step/lr")[0].value == pytest.approx(0.05 * (1 + math.cos(math.pi * (3 / 16) / 3)))
    losses = [e.value for e in events.Scalars("step/loss")]
    assert all(0 < v < 3 for v in losses) and len(events.Scalars("step/images_per_s")) == 11
    # the whole run's ETA on every epoch line but the last
    lines = [line for line in printed.splitlines() if line.startswith("epoch ")]
    assert [bool(re.search(r"  eta \d+m\d\ds$", line)) for line in lines] == [True, True, False]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--early-stopping", "val_loss"),
            "--early-stopping val_loss: train: early_stopping = 'val_loss' needs a validation set:"
            " set val_split, e.g. 0.1",
        ),
        (
            ("--monitor", "ema_test_acc"),
            "--monitor ema_test_acc: train: monitor = 'ema_test_acc' needs EMA weights: set ema, e.g. 0.999",
        ),
        (
            ("--early-stopping", "test_top5"),
            "error: --early-stopping test_top5: this run does not record it (top-5 needs >= 10 classes; this"
            " network has 4) — it records train_loss, train_acc, test_loss, test_acc",
        ),
        (("--accumulate", "64"), "--accumulate 64: train: accumulate = 64 exceeds batch_size = 32"),
    ],
)
def test_features_refuse_what_the_run_cannot_do(tmp_path, capsys, args, message):
    """The spec's checks (located at the flag) and the run's own (`error:`), one line each."""
    assert run_cli("train", write(tmp_path, TINY), "--out", str(tmp_path / "r"), *args) == 2
    assert capsys.readouterr().err.strip() == message


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--ema", "1", "'1' is not a decay 0 < d < 1"),
        ("--ema", "0", "'0' is not a decay 0 < d < 1"),
        ("--label-smoothing", "1", "'1' is not a fraction 0 <= f < 1"),
        ("--min-delta", "-1", "'-1' is not a finite number >= 0"),
        ("--clip-grad-norm", "0", "'0' is not a finite number > 0"),
        ("--save-top-k", "0", "'0' is not a positive integer"),
    ],
)
def test_feature_flags_name_their_range(tmp_path, capsys, flag, value, why):
    from specc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", write(tmp_path), f"{flag}={value}"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"error: specc train: argument {flag}: {why} (see `specc train --help`)\n"


def test_a_feature_flag_on_resume_is_a_recorded_change(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli("train", write(tmp_path, TINY), "--out", str(out), "--max-steps", "3") == 0
    capsys.readouterr()
    assert run_cli("train", "--resume", str(out), "--max-steps", "5", "--ema", "0.5") == 0
    assert "with ema None -> 0.5" in capsys.readouterr().err
    saved = load(out / "last.pt")
    assert saved["config"]["ema"] == 0.5 and saved["ema_updates"] == 2  # started from the weights at step 3
    assert torch.is_tensor(next(iter(saved["ema"].values())))
