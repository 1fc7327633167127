"""A forged or damaged specc checkpoint — a field of the wrong type, an optimizer state of
garbage — is refused in one line naming the file and the field, by every command that reads
one (train --resume, eval, compile, visualize, transform), never with a traceback."""

from __future__ import annotations

import pytest
import torch

from tests.train.train_helpers import TINY, load, run_cli, write

SUFFIX = " — not a checkpoint as specc writes it: damaged or edited?"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forge")
    spec = write(tmp, TINY.replace("epochs: 3", "epochs: 1"))
    assert run_cli("train", spec, "--out", str(tmp / "run")) == 0
    return tmp, spec, load(tmp / "run" / "last.pt")


def forge(tmp_path, payload: dict, **changes) -> str:
    folder = tmp_path / "forged"
    folder.mkdir(exist_ok=True)
    torch.save(payload | changes, folder / "last.pt")
    return str(folder / "last.pt")


def commands(spec: str, ckpt: str, tmp) -> dict[str, list[str]]:
    return {
        "train": ["train", "--resume", ckpt],
        "eval": ["eval", "--weights", ckpt],
        "compile": ["compile", "--weights", ckpt, "-o", str(tmp / "build")],
        "compile-spec": ["compile", spec, "--weights", ckpt, "-o", str(tmp / "build2")],
        "visualize": ["visualize", spec, "--weights", ckpt, "--layer", "conv1", "--no-image", "-o", str(tmp / "v.png")],
        "transform": [
            "transform",
            spec,
            "--replace-stride",
            "maxpool",
            "--weights",
            ckpt,
            "--weights-out",
            str(tmp / "w.pt"),
            "-o",
            str(tmp / "t.yaml"),
        ],  # fmt: skip
    }


FORGED = {
    "model": ([1, 2], "a state_dict (tensors by layer name)", "a list of 2 entries, not of the right kinds"),
    "spec": (5, "the spec's YAML text", "the number 5"),
    "epoch": ("3", "a whole number >= 0", "the text '3'"),
    "optimizer": ({"state": 5, "param_groups": "x"}, "an optimizer state_dict", "a dict of 2 entries, not of the right kinds"),
    "labels": (7, "a list of class names", "the number 7"),
    "history": ("x", "a list of metrics rows", "the text 'x'"),
    "rng": ({"torch": [torch.zeros(3)]}, "{'torch': [uint8 RNG states per rank], 'cuda': [...]}", "a dict of 1 entries, not of the right kinds"),
    "best": ({"split": "test"}, "None or {split, accuracy, epoch}", "a dict of 1 entries, not of the right kinds"),
}  # fmt: skip


@pytest.mark.parametrize("field", list(FORGED))
@pytest.mark.parametrize("command", ["train", "eval", "compile", "compile-spec", "visualize", "transform"])
def test_a_field_of_the_wrong_type_is_one_line_naming_it(trained, tmp_path, capsys, field, command):
    _, spec, payload = trained
    value, expected, got = FORGED[field]
    ckpt = forge(tmp_path, payload, **{field: value})
    capsys.readouterr()
    assert run_cli(*commands(spec, ckpt, tmp_path)[command]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {ckpt}: field '{field}' is not {expected} (it is {got}){SUFFIX}\n"
    assert not (tmp_path / "build").exists() and not (tmp_path / "w.pt").exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"preprocessing": {"kind": 5}}, "field 'preprocessing' is not a fitted preprocessing: preprocessing dict: format None: expected 1"),
        ({"config": {"lr": "fast"}}, "field 'config' is not a valid training recipe: lr: Input should be a valid number"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["train", "eval", "compile"])
def test_a_field_with_bad_contents_is_one_line(trained, tmp_path, capsys, changes, expected, command):
    _, spec, payload = trained
    ckpt = forge(tmp_path, payload, **changes)
    capsys.readouterr()
    assert run_cli(*commands(spec, ckpt, tmp_path)[command]) == 2
    assert capsys.readouterr().err == f"error: {ckpt}: {expected}\n"


def test_resume_checks_that_the_state_fits_the_run(trained, tmp_path, capsys):
    _, _, payload = trained
    optimizer = {
        "state": {0: {"momentum_buffer": torch.zeros(2, 2)}},
        "param_groups": payload["optimizer"]["param_groups"],
    }
    cases = [
        ({"optimizer": optimizer}, "field 'optimizer' does not fit this run (momentum_buffer of shape [2, 2] for a parameter of shape [8, 3, 3, 3])"),
        ({"rng": {"torch": [torch.zeros(3, dtype=torch.uint8)], "cuda": []}}, "field 'rng' does not hold valid RNG states"),
        ({"step": 99, "partial": {"loss_sum": 1.0, "correct": 1.0, "seen": 1.0, "seconds": 1.0}}, "field 'step' is 99, but an epoch of this run has 16 steps"),
        ({"step": 3, "partial": None}, "field 'partial' is missing, but the run stopped in the middle of an epoch"),
        ({"epoch": 2}, "field 'history' has 1 rows for 2 epochs done" + SUFFIX),
    ]  # fmt: skip
    for changes, expected in cases:
        ckpt = forge(tmp_path, payload, **changes)
        capsys.readouterr()
        assert run_cli("train", "--resume", ckpt) == 2, changes
        err = capsys.readouterr().err
        assert err.startswith(f"error: {ckpt}: {expected}") and err.count("\n") == 1, err


def test_model_with_other_shapes_is_refused_on_resume(trained, tmp_path, capsys):
    _, _, payload = trained
    model = dict(payload["model"]) | {"conv1.weight": torch.zeros(8, 3, 1, 1)}
    ckpt = forge(tmp_path, payload, model=model)
    capsys.readouterr()
    assert run_cli("train", "--resume", ckpt) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {ckpt}: field 'model' does not fit this run (") and err.count("\n") == 1
