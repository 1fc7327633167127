"""`specc ablate` resumes: finished runs are never trained again, an interrupted one
continues from its checkpoint, and --jobs trains in parallel processes."""

from __future__ import annotations

import json
import os
import signal

import yaml

from specc.ablate import runner
from specc.training import loop
from tests.test_ablate import ablate, counting, markdown_table, mtimes, write

THREE = ("--variants", "base,strided,all", "--lrs", "0.1", "--epochs", "2")


def test_an_interrupted_ablation_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    spec, out = write(tmp_path), tmp_path / "out"
    # SIGTERM to ourselves in the second run (strided), epoch 2, step 2.
    real_run_task, real_lr_at, current = runner.run_task, loop.lr_at, {}

    def run_task(task):
        current["task"] = task.name
        return real_run_task(task)

    def lr_at(cfg, epoch, step, steps):
        if current["task"] == "strided/lr0.1/seed0" and (epoch, step) == (1, 2):
            os.kill(os.getpid(), signal.SIGTERM)
        return real_lr_at(cfg, epoch, step, steps)

    monkeypatch.setattr(runner, "run_task", run_task)
    monkeypatch.setattr(loop, "lr_at", lr_at)
    assert ablate(spec, *THREE, "--out", str(out)) == 143
    assert capsys.readouterr().err.splitlines()[-1].startswith("interrupted: finished runs are kept")
    monkeypatch.undo()
    base, strided, allcnn = (out / v / "lr0.1" / "seed0" for v in ("base", "strided", "all"))
    assert (base / "result.json").exists()
    assert (strided / "last.pt").exists() and not (strided / "result.json").exists()
    assert not allcnn.exists()
    base_files = mtimes(base)

    called = counting(monkeypatch)
    assert ablate(spec, *THREE, "--out", str(out)) == 0
    assert "= 3 runs (1 done, 1 to resume, 1 to train)" in capsys.readouterr().err
    assert called == ["strided/lr0.1/seed0", "all/lr0.1/seed0"]
    assert mtimes(base) == base_files  # the finished run was not touched
    resumed = yaml.safe_load((strided / "config.yaml").read_text())["resumed"]
    assert [(r["epoch"], r["step"], r["command"]) for r in resumed] == [(1, 3, "specc ablate strided/lr0.1/seed0")]
    result = json.loads((strided / "result.json").read_text())
    assert (result["status"], result["epochs"]) == ("done", 2)
    report = json.loads((out / "report.json").read_text())
    assert [r["status"] for r in report["rows"]] == ["done", "done", "done"]


def test_parallel_jobs_split_the_threads_and_select_on_test(tmp_path, capsys):
    out = tmp_path / "out"
    args = ("--variants", "base,all", "--lrs", "0.1", "--jobs", "2", "--select", "test", "--out", str(out))
    assert ablate(write(tmp_path), *args) == 0  # --threads 1 in all: each job gets max(1, 1 // 2)
    assert "2 job(s) x 1 thread(s)" in capsys.readouterr().err
    for variant in ("base", "all"):
        config = yaml.safe_load((out / variant / "lr0.1" / "seed0" / "config.yaml").read_text())
        assert config["execution"]["threads"] == 1
        assert "val" not in config["data"]  # --select test trains on the whole training set
    report = json.loads((out / "report.json").read_text())
    assert (report["select"], report["val_split"], report["jobs"]) == ("test", 0.0, 2)
    text = (out / "report.md").read_text()
    assert "chosen on the test set (the paper's practice; the test error is then optimistic)" in text
    rows = markdown_table(text, "model")
    assert "val error %" not in rows[0] and rows[0]["test-chosen lr"] == "0.1"
