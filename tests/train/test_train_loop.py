"""`specc train` in-process on synthetic data: the run directory, checkpoints, faults
(NaN, interrupts, corrupt files, other architectures, wrong datasets) and exact resume."""

from __future__ import annotations

import csv
import json
import math
import os
import signal

import pytest
import yaml

from specc.training import loop
from tests.train.train_helpers import OTHER, TINY, load, run_cli, same_weights, write


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 3-epoch run of the tiny spec, and what it printed."""
    tmp = tmp_path_factory.mktemp("run")
    spec = write(tmp)
    out_dir = tmp / "run"
    code = run_cli("train", spec, "--out", str(out_dir))
    assert code == 0
    return out_dir, spec


def test_training_loss_falls_and_metrics_are_written(run):
    out, _ = run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] < math.log(4)
    assert rows[-1]["test_acc"] > 0.5
    with open(out / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [
        "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds", "eval_seconds",
        "images_per_s", "elapsed",
    ]  # fmt: skip
    assert float(table[2]["test_acc"]) == rows[2]["test_acc"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_yaml_records_everything_the_run_used(run):
    out, _ = run
    record = yaml.safe_load((out / "config.yaml").read_text())
    assert record["spec"]["name"] == "tiny" and record["seed"] == 0
    recipe = record["spec"]["train"]
    assert recipe["lr"] == 0.1 and recipe["momentum"] == 0.9 and recipe["epochs"] == 3  # resolved: every key
    assert len(record["data"]["train"]["fingerprint"]) == 16 and record["data"]["test"]["images"] == 512
    assert set(record["versions"]) == {"specc", "torch", "numpy", "python"}
    assert record["execution"]["threads"] == 1


def test_checkpoints_load_with_weights_only(run):
    out, _ = run
    last, best = load(out / "last.pt"), load(out / "best.pt")
    assert last["format"] == "specc-checkpoint-v1" and last["epoch"] == 3 and last["step"] == 0
    assert list(last["model"]) == [
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "conv3.weight",
        "conv3.bias",
    ]
    assert last["preprocessing"]["kind"] == "normalize" and len(last["preprocessing"]["mean"]) == 3
    assert last["labels"] == ["class0", "class1", "class2", "class3"]
    assert last["config"]["lr"] == 0.1 and "train:" in last["spec"] and len(last["spec_hash"]) == 64
    assert last["optimizer"]["state"] and last["scheduler"]["schedule"] == "cosine"
    assert len(last["rng"]["torch"]) == 1 and len(last["history"]) == 3
    assert best["epoch"] == last["best"]["epoch"] and best["best"]["split"] == "test"


def test_existing_run_is_not_overwritten(run, capsys):
    out, spec = run
    assert run_cli("train", spec, "--out", str(out)) == 2
    assert capsys.readouterr().err == (
        f"error: {out} already holds a run (last.pt, best.pt): continue it with `specc train --resume {out}`,"
        " or pass --out NEW_DIR\n"
    )


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    spec, out = write(tmp_path), tmp_path / "run"
    assert run_cli("train", spec, "--out", str(out), "--epochs", "1") == 0
    before = (out / "last.pt").read_bytes()
    capsys.readouterr()
    assert run_cli("train", "--resume", str(out), "--epochs", "2", "--lr", "1e6") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: epoch 2, step ")
    assert "the loss is nan at learning rate" in err
    assert f"the last good checkpoint {out}/last.pt (epoch 1) is kept" in err
    assert (out / "last.pt").read_bytes() == before


def test_mid_epoch_stop_resumes_bit_exactly(tmp_path, monkeypatch, capsys):
    spec = write(tmp_path)
    assert run_cli("train", spec, "--out", str(tmp_path / "ref")) == 0
    # SIGTERM to ourselves while epoch 2 is at step 3: the loop checkpoints before step 4.
    real_lr_at = loop.lr_at

    def lr_at(cfg, epoch, step, steps):
        if (epoch, step) == (1, 3):
            os.kill(os.getpid(), signal.SIGTERM)
        return real_lr_at(cfg, epoch, step, steps)

    monkeypatch.setattr(loop, "lr_at", lr_at)
    assert run_cli("train", spec, "--out", str(tmp_path / "cut")) == 143
    monkeypatch.undo()
    stopped = load(tmp_path / "cut" / "last.pt")
    assert (stopped["epoch"], stopped["step"]) == (1, 4)
    cut = tmp_path / "cut"
    assert capsys.readouterr().err == (
        f"SIGTERM: stopped in epoch 2 after step 4/16; checkpoint {cut}/last.pt"
        f" — continue with `specc train --resume {cut}`\n"
    )
    assert run_cli("train", "--resume", str(cut)) == 0
    # The resume names the same place, numbered the same way; the banner agrees.
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == f"resuming {cut}/last.pt (in epoch 2 after step 4/16)"
    assert f"  run dir: {cut} (continuing in epoch 2 after step 4/16)" in captured.out.splitlines()
    ref, resumed = load(tmp_path / "ref" / "last.pt"), load(tmp_path / "cut" / "last.pt")
    assert same_weights(ref["model"], resumed["model"])
    assert [r["train_loss"] for r in ref["history"]] == [r["train_loss"] for r in resumed["history"]]


def test_resume_refuses_another_architecture(run, tmp_path, capsys):
    out, _ = run
    other = write(tmp_path, OTHER, "other.yaml")
    assert run_cli("train", other, "--resume", str(out)) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out}/last.pt was trained for spec 'tiny' but {other} is spec 'other' with another"
        " architecture — a run resumes with the spec it started with (omit SPEC to use it)"
    )


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_is_one_clear_line(run, tmp_path, capsys, damage):
    broken = tmp_path / "last.pt"
    data = (run[0] / "last.pt").read_bytes()
    broken.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint")
    assert run_cli("train", "--resume", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err == f"error: {broken}: not a readable PyTorch checkpoint (truncated or corrupt?)\n"


def test_dataset_that_does_not_fit_the_spec_is_refused(tmp_path, capsys):
    spec = write(tmp_path, TINY.replace("  dataset_options: {size: 512}\n", ""))
    assert run_cli("train", spec, "--data", "fashion-mnist", "--out", str(tmp_path / "r")) == 2
    assert capsys.readouterr().err == (
        "error: fashion-mnist gives 1x28x28 images in 10 classes but spec 'tiny' expects 3x8x8 and 4 classes\n"
    )
    assert not (tmp_path / "r").exists()


def test_no_dataset_is_a_clear_error(tmp_path, capsys):
    spec = write(tmp_path, TINY.replace("  dataset: synthetic\n  dataset_options: {size: 512}\n", ""))
    assert run_cli("train", spec, "--out", str(tmp_path / "r")) == 2
    assert "no dataset: pass --data NAME or set train.dataset in the spec" in capsys.readouterr().err


def test_a_network_stuck_at_chance_gets_a_warning(tmp_path, capsys):
    # A ReLU on the class scores and near-zero weights: every logit is 0, the loss ln(4).
    dead = TINY.replace("activation: none}", "activation: relu, init: gaussian, init_std: 1.0e-9}")
    spec = write(tmp_path, dead)
    assert run_cli("train", spec, "--out", str(tmp_path / "r"), "--epochs", "1") == 0
    err = capsys.readouterr().err
    assert "warning: epoch 1: the training loss stayed at ln(4) = 1.3863, chance level" in err
    assert "a ReLU on the class scores" in err
