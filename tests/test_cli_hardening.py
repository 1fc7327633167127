"""Command-line values a user can get wrong end in one line naming the flag or the `--set` at
fault, exit 2; Ctrl-C at any moment exits 130 with one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import specc.cli
from specc.cli import main

SPEC = str(Path(__file__).resolve().parents[1] / "specs" / "allcnn_c.yaml")


def one_line_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--max-params", "-5", "'-5' is not a positive integer"),
        ("--max-params", "0", "'0' is not a positive integer"),
        ("--max-params", "2.5", "'2.5' is not a positive integer"),
        ("--max-params", "nan", "'nan' is not a positive integer"),
        ("--max-activation-gib", "nan", "'nan' is not a finite number > 0"),
        ("--max-activation-gib", "inf", "'inf' is not a finite number > 0"),
        ("--max-activation-gib", "-1", "'-1' is not a finite number > 0"),
        ("--max-activation-gib", "0", "'0' is not a finite number > 0"),
    ],
)
def test_numeric_flags_are_checked(capsys, flag, value, why):
    err = one_line_error(capsys, "check", SPEC, f"{flag}={value}")
    assert err == f"error: specc check: argument {flag}: {why} (see `specc check --help`)"


def test_scientific_budget_is_accepted(capsys):
    assert main(["check", SPEC, "--max-params", "1e9"]) == 0


def test_unknown_flag_is_one_line(capsys):
    err = one_line_error(capsys, "check", SPEC, "--frobnicate")
    assert err == "error: specc: unrecognized arguments: --frobnicate (see `specc --help`)"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["classes=100"],
            "allcnn_c.yaml:6:9: labels: 10 labels for 100 classes — expected one label per class"
            " (caused by --set classes=100)",
        ),
        (
            ["input.size=1", "classes=10"],
            "allcnn_c.yaml:19:5: layers[9] (conv7): 3x3 valid conv on a 1x1 input: (1 - 3)/1 + 1 = 0"
            " — expected an output of at least 1x1 (caused by --set input.size=1)",
        ),
    ],
)
def test_errors_caused_by_an_override_name_it(capsys, overrides, expected):
    argv = ["check", SPEC]
    for override in overrides:
        argv += ["--set", override]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(expected)


def test_budget_exceeded_by_an_override_names_it(capsys):
    assert main(["check", SPEC, "--set", "layers.conv2.filters=1000", "--max-params", "2000000"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(
        "layers: 2,932,754 parameters exceed the budget of 2,000,000 (--max-params to change)"
        " (caused by --set layers.conv2.filters=1000)"
    )


def test_error_of_the_spec_itself_is_not_blamed_on_an_override(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(Path(SPEC).read_text().replace("classes: 10", "classes: 11"))
    assert main(["check", str(spec), "--set", "name=other"]) == 2
    assert "caused by" not in capsys.readouterr().err


def test_ctrl_c_while_starting_exits_130(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(specc.cli, "build_parser", interrupted)
    assert main(["check", SPEC]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_ctrl_c_of_a_real_process_exits_130():
    """SIGINT to a `specc check -` waiting on its standard input."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "specc", "check", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # past the imports, blocked reading the spec
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == "interrupted\n"


def test_a_flag_that_sets_the_recipe_is_named_as_that_flag(capsys, tmp_path):
    fmnist = str(Path(SPEC).with_name("allcnn_c_fmnist.yaml"))
    assert main(["train", fmnist, "--data", "imagenet", "--out", str(tmp_path / "run")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "--data imagenet: train: dataset = 'imagenet' is not valid"
        " — expected one of cifar10, cifar100, fashion-mnist, mnist, folder, npy, synthetic"
    )
    assert not (tmp_path / "run").exists()
