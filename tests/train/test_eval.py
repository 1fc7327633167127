"""`specc eval`: error, accuracy, per-class accuracy and the confusion matrix, as text and
JSON, from a run's checkpoint or a plain state_dict; other architectures are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.train.train_helpers import OTHER, TINY, load, run_cli, write


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


@pytest.fixture(scope="module")
def with_val(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval_val")
    spec = write(tmp, TINY.replace("epochs: 3", "epochs: 1"))
    assert run_cli("train", spec, "--out", str(tmp / "run"), "--val-split", "0.25") == 0
    return tmp / "run" / "last.pt"


def test_split_val_is_the_held_out_part_and_train_the_rest(with_val, capsys):
    history = load(with_val)["history"][-1]
    counts = {}
    for split in ("val", "train", "test"):
        capsys.readouterr()
        assert run_cli("eval", "--weights", str(with_val), "--split", split, "--json") == 0
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        counts[split] = report["images"]
        assert report["split"] == split and captured.err == ""  # same images as the run: no note
        if split in ("val", "test"):  # the figures the run recorded for these splits
            assert report["accuracy"] == pytest.approx(history[f"{split}_acc"])
            assert report["loss"] == pytest.approx(history[f"{split}_loss"], rel=1e-5)
    assert counts == {"val": 128, "train": 384, "test": 512}  # 512 training images, a quarter held out


def test_split_val_without_a_held_out_set_is_one_line(trained, capsys):
    tmp, _ = trained
    capsys.readouterr()
    assert run_cli("eval", "--weights", str(tmp / "run" / "last.pt"), "--split", "val") == 2
    assert capsys.readouterr().err == (
        "error: split 'val': the run held out no validation set (val_split 0) — use the test or train split\n"
    )


def test_other_data_than_the_run_recorded_gets_a_note(with_val, capsys):
    capsys.readouterr()
    assert run_cli("eval", "--weights", str(with_val), "--set", "train.dataset_options.size=256", "--json") == 0
    err = capsys.readouterr().err
    assert err.startswith("note: these test images differ from the ones the run recorded (fingerprint ")


def test_compile_takes_the_spec_from_the_checkpoint(trained, tmp_path, capsys):
    tmp, spec = trained
    ckpt = str(tmp / "run" / "best.pt")
    assert run_cli("compile", "--weights", ckpt, "-o", str(tmp_path / "a"), "--target", "onnx") == 0
    assert run_cli("compile", spec, "--weights", ckpt, "-o", str(tmp_path / "b"), "--target", "onnx") == 0
    import onnx
    from onnx import numpy_helper

    weights = [
        {t.name: numpy_helper.to_array(t) for t in onnx.load(tmp_path / d / "tiny.onnx").graph.initializer}
        for d in ("a", "b")
    ]  # the metadata differ: the checkpoint's spec carries the resolved recipe
    assert weights[0].keys() == weights[1].keys() and all(
        np.array_equal(weights[0][k], weights[1][k]) for k in weights[0]
    )
    plain = tmp_path / "plain.pt"
    torch.save(load(tmp / "run" / "last.pt")["model"], plain)
    capsys.readouterr()
    assert run_cli("compile", "--weights", str(plain), "-o", str(tmp_path / "c")) == 2
    assert capsys.readouterr().err == (
        f"error: {plain}: a plain state_dict records no spec — name the SPEC it was trained for\n"
    )
