"""`specc train --weights CKPT [--weights-map MAP]`: a run starts from given weights (a specc
checkpoint, or a plain state_dict in another naming, as `specc import` maps it) instead of
the seeded initialisation — fine-tuning an imported model."""

from __future__ import annotations

import pytest
import torch
import yaml

from specc.checkpoint_io import WEIGHTS_MAP_FORMAT
from specc.spec import load_graph_text
from specc_torch import build
from tests.train.train_helpers import TINY, load, run_cli, write

# One step at a learning rate of 1e-30 leaves the weights where they started (to 1e-12).
STILL = ("--max-steps", "1", "--lr", "1e-30")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A run of TINY for one epoch: the weights to start from."""
    tmp = tmp_path_factory.mktemp("weights")
    spec = write(tmp)
    assert run_cli("train", spec, "--out", str(tmp / "a"), "--epochs", "1") == 0
    return tmp, spec, load(tmp / "a" / "last.pt")["model"]


def _assert_starts_from(run_dir, expected: dict) -> None:
    got = load(run_dir / "last.pt")["model"]
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-9, atol=1e-12)


def test_a_run_starts_from_a_checkpoints_weights(source, capsys):
    tmp, spec, trained = source
    assert run_cli("train", spec, "--weights", str(tmp / "a" / "last.pt"), "--out", str(tmp / "b"), *STILL) == 0
    _assert_starts_from(tmp / "b", trained)
    # ...and not from the seeded initialisation, which a run without --weights uses.
    seeded = build(load_graph_text(TINY, "tiny.yaml"), seed=0).state_dict()
    assert not torch.allclose(seeded["conv1.weight"], load(tmp / "b" / "last.pt")["model"]["conv1.weight"])
    config = yaml.safe_load((tmp / "b" / "config.yaml").read_text())
    assert "--weights" in config["command"]  # the run records where it started


def test_a_foreign_state_dict_loads_through_a_weights_map(source, tmp_path, capsys):
    tmp, spec, trained = source
    foreign = {f"net.{key}": value for key, value in trained.items()}  # another model's naming
    torch.save(foreign, tmp_path / "foreign.pt")
    mapping = {"format": WEIGHTS_MAP_FORMAT, "keys": {key: f"net.{key}" for key in trained}}
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(mapping))
    args = ("--weights", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "c"), *STILL)
    assert run_cli("train", spec, *args, "--weights-map", str(tmp_path / "map.yaml")) == 0
    _assert_starts_from(tmp_path / "c", trained)
    capsys.readouterr()
    # Without the map: the state_dict does not fit, said in one line that suggests the map.
    assert run_cli("train", spec, "--weights", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "d")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'foreign.pt'} does not fit spec 'tiny'") and "\n" not in err
    assert "missing" in err and "--weights-map" in err
    assert not (tmp_path / "d" / "last.pt").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ("--weights-map", "map.yaml"),
            "error: --weights-map: only with --weights (it renames that state_dict's keys)",
        ),
        (
            ("--weights", "x.pt", "--resume", "RUN"),
            "error: --weights with --resume: a resumed run continues from its own checkpoint",
        ),
    ],
)
def test_refusals(source, capsys, extra, message):
    tmp, spec, _ = source
    capsys.readouterr()
    args = ("train", *extra) if "--resume" in extra else ("train", spec, *extra)
    assert run_cli(*args) == 2
    assert capsys.readouterr().err.strip() == message


def test_json_prints_one_document_and_the_epoch_lines_on_stderr(source, capsys):
    tmp, spec, _ = source
    capsys.readouterr()
    assert run_cli("train", spec, "--out", str(tmp / "j"), "--epochs", "1", "--json") == 0
    captured = capsys.readouterr()
    import json

    summary = json.loads(captured.out)  # the whole of stdout is one document
    history = load(tmp / "j" / "last.pt")["history"]
    assert summary["epochs"] == 1 and summary["last"]["test_acc"] == history[-1]["test_acc"]
    assert summary["run_dir"] == str(tmp / "j") and summary["message"].startswith("done: 1 epochs")
    assert "epoch 1/1" in captured.err


def test_compile_ema_deploys_the_averaged_weights(source, tmp_path, capsys):
    import numpy as np
    import onnxruntime as ort

    tmp, spec, _ = source
    assert run_cli("train", spec, "--out", str(tmp_path / "e"), "--epochs", "1", "--ema", "0.5") == 0
    saved = load(tmp_path / "e" / "last.pt")
    args = ("compile", spec, "--weights", str(tmp_path / "e" / "last.pt"), "--target", "onnx", "--no-fold")
    assert run_cli(*args, "--ema", "-o", str(tmp_path / "out")) == 0
    session = ort.InferenceSession(str(tmp_path / "out" / "tiny.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    graph = load_graph_text(TINY, "tiny.yaml")
    averaged, trained = build(graph).eval(), build(graph).eval()  # logits, as compile emits
    averaged.load_state_dict(saved["ema"])
    trained.load_state_dict(saved["model"])
    with torch.no_grad():
        np.testing.assert_allclose(got, averaged(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(got, trained(torch.from_numpy(x)).numpy(), atol=1e-4)
    capsys.readouterr()
    # A checkpoint without EMA weights: one line, nothing written.
    assert run_cli(*args[:3], str(tmp / "a" / "last.pt"), "--ema", "-o", str(tmp_path / "none")) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --ema: {tmp / 'a' / 'last.pt'} holds no EMA weights (train with --ema DECAY to keep them)"
    )
    assert not (tmp_path / "none").exists()
