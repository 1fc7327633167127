"""`specc train --nproc 2` as one job: a worker that dies is reported in one line naming its
rank (never as "internal error: RuntimeError ... Connection reset by peer"), an error every
worker hits is printed once, and Ctrl-C stops every worker with a checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.train.train_helpers import TINY, load, popen, specc_command, subprocess_env, write

TIMEOUT = 120
# Long enough to be caught in the middle: 40 epochs of 512 images.
LONG = TINY.replace("epochs: 3", "epochs: 40")


def worker_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker of `rank` that the launcher process started (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_killed_worker_is_one_line_naming_its_rank(tmp_path):
    out = tmp_path / "run"
    job = popen("train", write(tmp_path, LONG), "--out", str(out), "--nproc", "2", "--no-progress", cwd=tmp_path)
    try:
        wait_for(lambda: (out / "last.pt").exists(), job, "the first checkpoint")
        victim = worker_pid(job.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        _, err = job.communicate(timeout=TIMEOUT)
    finally:
        job.kill()
    assert job.returncode == 2
    assert err == (
        "error: training process rank 1 of 2 was killed by SIGKILL (out of memory?); the other processes were"
        f" stopped — continue from the last checkpoint with `specc train --resume {out}`\n"
    )
    assert load(out / "last.pt")["epoch"] >= 1  # what was written is intact


def test_an_error_of_every_worker_is_printed_once(tmp_path):
    spec = write(tmp_path, TINY.replace("batch_size: 32", "batch_size: 33"))
    done = subprocess.run(
        specc_command("train", spec, "--out", str(tmp_path / "run"), "--nproc", "2", "--no-progress"),
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "error: batch_size 33 does not split evenly over 2 processes\n"


def test_ctrl_c_stops_every_worker_with_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    job = popen("train", write(tmp_path, LONG), "--out", str(out), "--nproc", "2", "--no-progress", cwd=tmp_path)
    try:
        wait_for(lambda: (out / "last.pt").exists(), job, "the first checkpoint")
        job.send_signal(signal.SIGINT)  # what a terminal sends the launcher on Ctrl-C
        _, err = job.communicate(timeout=TIMEOUT)
    finally:
        job.kill()
    assert job.returncode == 130
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("SIGINT: stopped ") and f"--resume {out}`" in lines[0], err
    saved = load(out / "last.pt")
    assert saved["world_size"] == 2 and saved["epoch"] < 40
