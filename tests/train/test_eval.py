"""`specc eval`: error, accuracy, per-class accuracy and the confusion matrix, as text and
JSON, from a run's checkpoint or a plain state_dict; other architectures are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.train.train_helpers import OTHER, load, run_cli, write


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    spec = write(tmp)
    assert run_cli("train", spec, "--out", str(tmp / "run"), "--epochs", "2") == 0
    return tmp, spec


def test_text_report(trained, capsys):
    tmp, _ = trained
    capsys.readouterr()
    assert run_cli("eval", "--weights", str(tmp / "run" / "best.pt")) == 0
    out = capsys.readouterr().out.splitlines()
    best = load(tmp / "run" / "best.pt")
    accuracy = best["history"][-1]["test_acc"]
    assert out[0] == (
        f"tiny on synthetic test (512 images): error {100 * (1 - accuracy):.2f}%, accuracy {100 * accuracy:.2f}%,"
        f" loss {best['history'][-1]['test_loss']:.4f}"
    )
    assert out[2] == "per-class accuracy:" and out[3].startswith("    0  class0  ")
    assert out[8] == "confusion matrix (rows: true class, columns: predicted class):"
    assert out[9] == "  true\\pred   0   1   2   3"
    assert len(out) == 14


def test_json_report_agrees_with_training(trained, capsys):
    tmp, _ = trained
    capsys.readouterr()
    assert run_cli("eval", "--weights", str(tmp / "run" / "last.pt"), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    history = load(tmp / "run" / "last.pt")["history"][-1]
    assert report["accuracy"] == pytest.approx(history["test_acc"]) and report["images"] == 512
    assert report["loss"] == pytest.approx(history["test_loss"], rel=1e-5)
    confusion = np.array(report["confusion"])
    assert confusion.shape == (4, 4) and confusion.sum() == 512
    per_class = [c["accuracy"] for c in report["per_class"]]
    assert per_class == pytest.approx(list(np.diag(confusion) / confusion.sum(axis=1)))
    assert report["labels"] == ["class0", "class1", "class2", "class3"]


def test_plain_state_dict_needs_its_spec(trained, tmp_path, capsys):
    tmp, spec = trained
    plain = tmp_path / "plain.pt"
    torch.save(load(tmp / "run" / "last.pt")["model"], plain)
    assert run_cli("eval", "--weights", str(plain)) == 2
    assert "a plain state_dict records no spec — name the SPEC it was trained for" in capsys.readouterr().err
    assert run_cli("eval", spec, "--weights", str(plain), "--json") == 0
    assert json.loads(capsys.readouterr().out)["images"] == 512


def test_other_architecture_is_refused_naming_both(trained, tmp_path, capsys):
    tmp, _ = trained
    other = write(tmp_path, OTHER, "other.yaml")
    capsys.readouterr()
    assert run_cli("eval", other, "--weights", str(tmp / "run" / "last.pt")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp}/run/last.pt was trained for spec 'tiny' (hash ")
    assert "but the spec is 'other' (hash " in err and err.count("\n") == 1


def test_train_and_eval_help_have_examples(capsys):
    from specc.cli import main

    for command in ("train", "eval"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"specc {command}" in capsys.readouterr().out
