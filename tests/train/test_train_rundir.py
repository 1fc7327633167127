"""The run directory: a new run starts only where nothing would be lost, temporary files of an
interrupted write are cleaned up, and config.yaml keeps the original command across resumes."""

from __future__ import annotations

import pytest
import torch
import yaml

from specc.training.rundir import RUN_FORMAT, check_new_run_dir, is_run_config
from tests.train.train_helpers import TINY, load, run_cli, write

ONE_EPOCH = TINY.replace("epochs: 3", "epochs: 1")


@pytest.mark.parametrize(
    ("files", "shown"),
    [
        ({"notes.txt": "mine"}, "notes.txt"),
        ({"config.yaml": "my: own settings\n"}, "config.yaml"),  # a config.yaml specc did not write
        ({"a": "", "b": "", "c": "", "d": "", "e": "", "f": ""}, "a, b, c, d and 2 more"),
        ({"metrics.csv": "epoch\n"}, "metrics.csv"),  # a run's file, but no run: not ours to replace
    ],
)
def test_a_folder_with_foreign_files_is_refused(tmp_path, capsys, files, shown):
    out = tmp_path / "out"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    assert run_cli("train", write(tmp_path, ONE_EPOCH), "--out", str(out)) == 2
    assert capsys.readouterr().err == (
        f"error: --out {out}: the folder holds {shown}, which is not a specc run — a run starts in a new or"
        " empty folder: pass --out NEW_DIR\n"
    )
    assert {p.name: p.read_text() for p in out.iterdir()} == files  # untouched


def test_a_file_as_out_is_refused(tmp_path, capsys):
    (tmp_path / "out").write_text("x")
    assert run_cli("train", write(tmp_path, ONE_EPOCH), "--out", str(tmp_path / "out")) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'out'}: exists and is not a folder\n"


def test_a_run_that_never_checkpointed_and_temporary_files_make_way(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    # What a run killed during its first epoch leaves: our config.yaml, and a half-written
    # checkpoint under the atomic writer's temporary name.
    (out / "config.yaml").write_text(f"format: {RUN_FORMAT}\ncommand: specc train x.yaml\n")
    (out / ".last.pt.k2j4_x9q.tmp").write_bytes(b"half a checkpoint")
    check_new_run_dir(out)  # no error
    assert run_cli("train", write(tmp_path, ONE_EPOCH), "--out", str(out)) == 0
    assert (
        "note: removed 1 temporary file(s) an interrupted write left: .last.pt.k2j4_x9q.tmp" in capsys.readouterr().err
    )
    assert sorted(p.name for p in out.iterdir() if p.name != "tensorboard") == [
        "best.pt", "config.yaml", "curves.png", "last.pt", "metrics.csv", "metrics.jsonl",
    ]  # fmt: skip (tensorboard/: where tensorboard is installed)


def test_temporary_files_are_removed_on_resume_and_others_kept(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("train", write(tmp_path, ONE_EPOCH), "--out", str(out)) == 0
    (out / ".metrics.csv.abc123.tmp").write_text("partial")
    (out / ".notes.txt.abc123.tmp").write_text("not one of ours")  # not a run file's temp: kept
    capsys.readouterr()
    assert run_cli("train", "--resume", str(out), "--epochs", "2") == 0
    assert "note: removed 1 temporary file(s) an interrupted write left: .metrics.csv.abc123.tmp" in (
        capsys.readouterr().err
    )
    assert (out / ".notes.txt.abc123.tmp").exists() and not (out / ".metrics.csv.abc123.tmp").exists()


def test_config_yaml_keeps_the_original_command_across_resumes(tmp_path, capsys):
    spec, out = write(tmp_path, ONE_EPOCH), tmp_path / "out"
    assert run_cli("train", spec, "--out", str(out), "--lr", "0.05", "--set", "train.momentum=0.8") == 0
    first = yaml.safe_load((out / "config.yaml").read_text())
    assert (out / "config.yaml").read_text().startswith(f"format: {RUN_FORMAT}\n") and is_run_config(
        out / "config.yaml"
    )
    assert (
        first["command"]
        == f"specc train {spec} --lr 0.05 --threads 1 --out {out} --set train.momentum=0.8 --no-progress"
    )
    assert first["overrides"] == ["train.momentum=0.8", "train.lr=0.05"] and first["resumed"] == []
    for epochs in ("2", "3"):
        assert run_cli("train", "--resume", str(out), "--epochs", epochs) == 0
    record = yaml.safe_load((out / "config.yaml").read_text())
    assert (record["command"], record["overrides"], record["started"]) == (
        first["command"], first["overrides"], first["started"],
    )  # fmt: skip
    assert [(r["epoch"], r["step"], r["changes"]) for r in record["resumed"]] == [
        (1, 0, "epochs 1 -> 2"),
        (2, 0, "epochs 2 -> 3"),
    ]
    assert record["resumed"][1]["command"] == f"specc train --epochs 3 --threads 1 --resume {out} --no-progress"
    assert record["spec"]["train"]["epochs"] == 3  # the recipe as it now stands
    # The checkpoint keeps the same story: config.yaml can be rebuilt from it.
    saved = load(out / "last.pt")
    assert saved["run"]["command"] == first["command"] and len(saved["resumes"]) == 2
    (out / "config.yaml").unlink()
    assert run_cli("train", "--resume", str(out), "--epochs", "4") == 0
    rebuilt = yaml.safe_load((out / "config.yaml").read_text())
    assert rebuilt["command"] == first["command"] and len(rebuilt["resumed"]) == 3


def test_resume_refuses_a_foreign_config_yaml(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("train", write(tmp_path, ONE_EPOCH), "--out", str(out)) == 0
    (out / "config.yaml").write_text("my: notes\n")
    capsys.readouterr()
    assert run_cli("train", "--resume", str(out), "--epochs", "2") == 2
    assert capsys.readouterr().err == (
        f"error: {out}/config.yaml: not the config.yaml of a specc run (its first line is not"
        f" 'format: {RUN_FORMAT}') — it would be overwritten; move it away to continue the run\n"
    )
    assert (out / "config.yaml").read_text() == "my: notes\n"


def test_resume_notes_another_thread_count(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("train", write(tmp_path, ONE_EPOCH), "--out", str(out)) == 0  # run_cli: --threads 1
    assert load(out / "last.pt")["threads"] == 1
    capsys.readouterr()
    threads = torch.get_num_threads()
    try:  # run_cli appends --threads 1; a later --threads wins in argparse
        from specc.cli import main

        assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress", "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().err.splitlines()[0] == (
        f"resuming {out}/last.pt (after epoch 1) with epochs 1 -> 2; the run used 1 CPU thread per process,"
        " this one 2 — it continues, but not bit-identically to an uninterrupted run"
    )
