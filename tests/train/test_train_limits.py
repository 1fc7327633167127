"""Short runs: a warm-up longer than an overridden run is shortened (saying so), --max-steps
and --limit-batches make runs of a few steps whose checkpoints resume coherently, and the
numeric flags refuse values outside their range in one line."""

from __future__ import annotations

import pytest

from specc.cli import main
from tests.conftest import SPECS
from tests.train.train_helpers import TINY, load, run_cli, same_weights, write

WARM = TINY.replace("  schedule: cosine\n", "  schedule: cosine\n  warmup_epochs: 1\n")  # 1 of 3 epochs


def test_an_override_that_leaves_no_room_for_the_warmup_shortens_it(tmp_path, capsys):
    spec, out = write(tmp_path, WARM), tmp_path / "run"
    assert run_cli("train", spec, "--out", str(out), "--epochs", "1") == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "note: warm-up shortened from 1 to 0.3333 epochs: the run is now 1 epoch(s), and the spec's"
        " warm-up takes 1 of its 3 (kept in proportion)"
    )
    assert load(out / "last.pt")["config"]["warmup_epochs"] == pytest.approx(0.3333)


def test_the_papers_fmnist_spec_runs_with_one_epoch(tmp_path, capsys):
    # `specs/allcnn_c_fmnist.yaml` warms up for 1 of 12 epochs; only the check is run here.
    from specc.commands.train_options import load_spec
    from specc.training.config import flag_overrides

    class Args:
        spec, overrides, max_params, max_activation_gib = str(SPECS / "allcnn_c_fmnist.yaml"), [], 10**9, 16.0

    graph = load_spec(Args, flag_overrides({"epochs": 1}))
    assert graph.train is not None and graph.train["warmup_epochs"] == pytest.approx(1 / 12, abs=1e-4)
    assert "note: warm-up shortened from 1 to 0.08333 epochs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("spec_text", "args", "message"),
    [
        # The spec's own recipe is wrong: its error stands, located in the spec.
        (
            TINY.replace("  schedule: cosine\n", "  warmup_epochs: 3\n"),
            (),
            "warmup_epochs = 3.0 must be less than epochs = 3",
        ),
        # A warm-up the command line asks for is not second-guessed.
        (TINY, ("--set", "train.warmup_epochs=5"), "warmup_epochs = 5.0 must be less than epochs = 3"),
    ],
)
def test_a_warmup_error_of_the_spec_or_the_command_line_stands(tmp_path, capsys, spec_text, args, message):
    assert run_cli("train", write(tmp_path, spec_text), "--out", str(tmp_path / "r"), *args) == 2
    assert message in capsys.readouterr().err


def test_max_steps_stops_with_a_checkpoint_that_resumes_exactly(tmp_path, capsys):
    spec = write(tmp_path, TINY)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert run_cli("train", spec, "--out", str(straight)) == 0
    # 16 steps an epoch: 21 steps end in epoch 2 after step 5.
    assert run_cli("train", spec, "--out", str(cut), "--max-steps", "21") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        f"stopped: --max-steps 21 reached in epoch 2 after step 5/16; checkpoint {cut}/last.pt"
        f" — continue with `specc train --resume {cut}`"
    )
    stopped = load(cut / "last.pt")
    assert (stopped["epoch"], stopped["step"], stopped["global_step"]) == (1, 5, 21)
    assert run_cli("train", "--resume", str(cut), "--max-steps", "21") == 0  # already there: nothing more
    assert load(cut / "last.pt")["global_step"] == 21
    assert run_cli("train", "--resume", str(cut)) == 0
    a, b = load(straight / "last.pt"), load(cut / "last.pt")
    assert same_weights(a["model"], b["model"]) and b["global_step"] == 48
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_limit_batches_shortens_every_epoch_and_stays_with_the_run(tmp_path, capsys):
    spec, out = write(tmp_path, TINY), tmp_path / "run"
    assert run_cli("train", spec, "--out", str(out), "--limit-batches", "3", "--epochs", "2") == 0
    saved = load(out / "last.pt")
    assert saved["global_step"] == 6 and saved["limits"] == {"batches": 3}
    assert saved["scheduler"]["steps_per_epoch"] == 3
    assert [r["epoch"] for r in saved["history"]] == [1, 2]
    assert "batch 32, 2 epochs, first 3 batches of each" in capsys.readouterr().out
    assert run_cli("train", "--resume", str(out), "--epochs", "3") == 0  # keeps the limit
    assert load(out / "last.pt")["global_step"] == 9
    capsys.readouterr()
    assert run_cli("train", "--resume", str(out), "--epochs", "4", "--limit-batches", "5") == 2
    assert capsys.readouterr().err == (
        f"error: --limit-batches 5: {out}/last.pt was trained with --limit-batches 3;"
        " a run keeps its batches per epoch\n"
    )


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--lr", "nan", "'nan' is not a finite number > 0"),
        ("--lr", "inf", "'inf' is not a finite number > 0"),
        ("--lr", "-0.1", "'-0.1' is not a finite number > 0"),
        ("--lr", "0", "'0' is not a finite number > 0"),
        ("--epochs", "0", "'0' is not a positive integer"),
        ("--epochs", "2.5", "'2.5' is not a positive integer"),
        ("--batch-size", "-4", "'-4' is not a positive integer"),
        ("--threads", "0", "'0' is not a positive integer"),
        ("--nproc", "0", "'0' is not a positive integer"),
        ("--max-steps", "nan", "'nan' is not a positive integer"),
        ("--limit-batches", "0", "'0' is not a positive integer"),
        ("--val-split", "nan", "'nan' is not a fraction 0 <= f < 1"),
        ("--val-split", "1", "'1' is not a fraction 0 <= f < 1"),
        ("--val-split", "-0.1", "'-0.1' is not a fraction 0 <= f < 1"),
        ("--seed", "-1", "'-1' is not a whole number >= 0"),
    ],
)
def test_numeric_train_flags_name_the_flag_and_the_range(tmp_path, capsys, flag, value, why):
    with pytest.raises(SystemExit) as exc:
        main(["train", write(tmp_path), f"{flag}={value}"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"error: specc train: argument {flag}: {why} (see `specc train --help`)\n"


def test_numeric_eval_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--weights", "x.pt", "--batch-size", "0"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "error: specc eval: argument --batch-size: '0' is not a positive integer (see `specc eval --help`)\n"
    )
