"""Multi-node training through torchrun's c10d rendezvous, with two agents on 127.0.0.1 acting
as two nodes of one process each (gloo): the run ends with the weights of the same run on one
node with two processes (`--nproc 2`), also after one node was killed mid-run and the job was
resumed from its last checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from specc.training.distributed import free_port
from tests.train.train_helpers import TINY, load, same_weights, specc_command, subprocess_env, write

TIMEOUT = 180
# 4 epochs of 2048 8x8 images: an epoch lasts long enough (~1 s on 2 cores) to kill a node
# in the middle of the second one.
SPEC = TINY.replace("{size: 512}", "{size: 2048}").replace("epochs: 3", "epochs: 4").replace("32", "64")


def start_nodes(run: Path, cwd: Path, *args: str) -> list[subprocess.Popen]:
    """Two torchrun agents, one process each, meeting at a c10d rendezvous on loopback."""
    endpoint = f"127.0.0.1:{free_port()}"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", f"test-{os.getpid()}"]
    rendezvous += ["--local-addr", "127.0.0.1", "--max-restarts", "0"]
    command = [*torchrun, *rendezvous, *specc_command("train", *args, "--no-progress")[1:]]
    return [
        subprocess.Popen(
            command,
            cwd=cwd,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a process group per node: killing a node kills its agent and worker
        )  # fmt: skip
        for _ in range(2)
    ]


def finish(nodes: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each node; any still running after TIMEOUT is killed."""
    results = []
    deadline = time.monotonic() + TIMEOUT
    for node in nodes:
        try:
            out, err = node.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill(node)
            out, err = node.communicate()
        results.append((node.returncode, out, err))
    return results


def kill(node: subprocess.Popen) -> None:
    """SIGKILL a node: its agent's process group and every process below the agent (torchrun
    starts its workers in sessions of their own)."""
    for pid in [*descendants(node.pid), node.pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(node.pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children before their parents."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found[::-1]


def test_two_nodes_match_two_processes_and_resume_after_a_node_is_killed(tmp_path):
    spec = write(tmp_path, SPEC)
    # The single-node reference runs alongside (its result does not depend on the load).
    single = subprocess.Popen(
        specc_command("train", spec, "--out", str(tmp_path / "single"), "--nproc", "2", "--no-progress"),
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    run = tmp_path / "multi"
    nodes = start_nodes(run, tmp_path, spec, "--out", str(run))
    try:
        metrics, deadline = run / "metrics.jsonl", time.monotonic() + TIMEOUT
        while not (metrics.exists() and metrics.read_text().count("\n") >= 1):  # epoch 1 checkpointed
            assert all(n.poll() is None for n in nodes), finish(nodes)
            assert time.monotonic() < deadline, "the two-node run never finished its first epoch"
            time.sleep(0.02)
        kill(nodes[1])
        (_, _, _), (survivor_code, _, survivor_err) = finish(nodes[1:]) + finish(nodes[:1])
        ((single_code, _, single_err),) = finish([single])
    finally:
        for node in [*nodes, single]:
            kill(node)
    assert single_code == 0, single_err
    assert survivor_code != 0
    assert "lost contact with another training process" in survivor_err
    stopped = load(run / "last.pt")
    assert (stopped["epoch"], stopped["step"], stopped["world_size"]) == (1, 0, 2)

    nodes = start_nodes(run, tmp_path, "--resume", str(run))
    try:
        results = finish(nodes)
    finally:
        for node in nodes:
            kill(node)
    assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    printed = "".join(out for _, out, _ in results)
    assert printed.count("epoch 4/4") == 1 and "2 processes ended with identical weights" in printed
    resumed, straight = load(run / "last.pt"), load(tmp_path / "single" / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == 4
    assert same_weights(resumed["model"], straight["model"])
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in straight["history"]]
