"""A real `specc train` process killed with SIGKILL, then resumed, ends with exactly the
weights of a run that was never interrupted (CPU, one thread)."""

from __future__ import annotations

import signal
import time

from tests.train.train_helpers import TINY, load, popen, run_cli, same_weights, write

# Five epochs of 1024 16x16 images: long enough to be killed half-way, short enough for CI.
SPEC = TINY.replace("size: 8}", "size: 16}").replace("{size: 512}", "{size: 1024}").replace("epochs: 3", "epochs: 5")


def test_sigkilled_run_resumes_to_identical_weights(tmp_path):
    spec = write(tmp_path, SPEC)
    killed = tmp_path / "killed"
    process = popen("train", spec, "--out", str(killed), "--threads", "1", "--no-progress", cwd=tmp_path)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 120
    try:
        # Kill as soon as the checkpoint of epoch 2 exists (metrics are written right after it).
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never reached epoch 2"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    interrupted = load(killed / "last.pt")
    assert 2 <= interrupted["epoch"] < 5 and interrupted["step"] == 0

    assert run_cli("train", "--resume", str(killed)) == 0
    assert run_cli("train", spec, "--out", str(tmp_path / "straight")) == 0
    resumed, straight = load(killed / "last.pt"), load(tmp_path / "straight" / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == 5
    assert same_weights(resumed["model"], straight["model"])
    assert same_weights(resumed["optimizer"]["state"][0], straight["optimizer"]["state"][0])
    assert [r["test_acc"] for r in resumed["history"]] == [r["test_acc"] for r in straight["history"]]
    assert [(r["epoch"], r["step"]) for r in resumed["resumes"]] == [(interrupted["epoch"], 0)]
