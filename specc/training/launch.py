"""Several training processes as one job: `specc train --nproc N` on this machine, and how
each process of a distributed run (ours or torchrun's) ends.

The launcher starts N copies of `specc train` with torchrun's environment (RANK, LOCAL_RANK,
WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT on loopback) and watches them. The
workers print their normal output; an error is not printed by the worker but left, with its
kind, in a file of the launcher's folder (SPECC_LAUNCH_DIR), and the launcher prints one line
for the whole job: the error of the process that failed first, or which rank died and how.
A process that failed only because another one died ("lost contact") is never the one named.
When one process has failed, the others get GRACE_S seconds to notice, then SIGTERM, then
SIGKILL: a worker blocked in a collective with a dead peer (NCCL can wait for minutes) never
keeps the job alive.

Ctrl-C: the workers run in a session of their own, so a terminal's SIGINT reaches only the
launcher, which passes it on once to each of them (each then checkpoints and stops, exactly
as a single process does); SIGTERM is passed on the same way.

Every process of a distributed run ends with `os._exit` once its files are written and its
output flushed (`end_worker`). Letting the interpreter shut down instead races with the
process group's threads: gloo's workers may still hold a collective's tensors, which they
can only free with the GIL, and a thread that asks for the GIL while the interpreter exits
aborts the process ("terminate called without an active exception", SIGABRT, after a run
that had finished). After a lost peer the group cannot be shut down cleanly at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from specc.errors import SpecError, UserError

LAUNCH_DIR_ENV = "SPECC_LAUNCH_DIR"
GRACE_S = 10.0  # after one process failed: how long the others get before SIGTERM (then as long before SIGKILL)
POLL_S = 0.05
EXIT_USER, EXIT_INTERNAL = 2, 1
EXIT_INTERRUPTED = (130, 143)
# What gloo and NCCL say when the process at the other end of a connection is gone.
_PEER_LOST_MARKERS = ("connection reset by peer", "connection closed by peer", "broken pipe", "gloo/transport", "nccl")


# -- the launcher ---------------------------------------------------------------------------
def launch(nproc: int, argv: list[str]) -> int:
    """Run `specc train ARGV` in `nproc` processes on this machine; the job's exit status."""
    if nproc < 1:
        raise UserError(f"--nproc {nproc}: expected a positive number of processes")
    from specc.training.distributed import free_port

    with tempfile.TemporaryDirectory(prefix="specc-launch-") as folder:
        env = dict(os.environ)
        # One share of the cores each (what torchrun's OMP_NUM_THREADS=1 would waste on a
        # big machine); an explicit OMP_NUM_THREADS or --threads wins.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        env |= {
            "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
            LAUNCH_DIR_ENV: folder,
        }
        command = [sys.executable, "-m", "specc", "train", *argv]
        workers = []
        with _forwarding_signals(workers):
            for rank in range(nproc):
                rank_env = env | {"RANK": str(rank), "LOCAL_RANK": str(rank)}
                workers.append(
                    subprocess.Popen(command, env=rank_env, start_new_session=True, preexec_fn=_die_with_parent)
                )
            ended = _watch(workers)
        return _report(ended, Path(folder), nproc)


def _die_with_parent() -> None:
    """In a worker, before it starts: SIGTERM (checkpoint and stop) when the launcher dies,
    even by SIGKILL, instead of training on alone in its own session (Linux only)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1  # from <sys/prctl.h>
            ctypes.CDLL("libc.so.6").prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextlib.contextmanager
def _forwarding_signals(workers: list[subprocess.Popen]):
    """While the workers run, SIGINT and SIGTERM to the launcher go to each of them once."""

    def forward(signum, frame) -> None:
        for worker in workers:
            if worker.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(workers: list[subprocess.Popen]) -> list[tuple[int, int]]:
    """Wait for every worker; (rank, exit status) in the order they ended. Once one has
    failed, the rest are stopped after a grace period (SIGTERM, then SIGKILL)."""
    ended: list[tuple[int, int]] = []
    failed_at = None
    terminated = False
    while len(ended) < len(workers):
        for rank, worker in enumerate(workers):
            code = worker.poll()
            if code is not None and rank not in (r for r, _ in ended):
                ended.append((rank, code))
                if code != 0 and failed_at is None:
                    failed_at = time.monotonic()
        if failed_at is not None and len(ended) < len(workers):
            waited = time.monotonic() - failed_at
            if waited > 2 * GRACE_S:
                _signal_running(workers, signal.SIGKILL)
            elif waited > GRACE_S and not terminated:
                _signal_running(workers, signal.SIGTERM)
                terminated = True
        time.sleep(POLL_S)
    return ended


def _signal_running(workers: list[subprocess.Popen], signum: int) -> None:
    for worker in workers:
        if worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signum)


def _report(ended: list[tuple[int, int]], folder: Path, nproc: int) -> int:
    """Print at most one message for the job and return its exit status."""
    if all(code == 0 for _, code in ended):
        return 0
    notes = {rank: _read_note(folder, rank) for rank, _ in ended}
    if all(code in EXIT_INTERRUPTED for _, code in ended):
        # Rank 0 said where it stopped; a second Ctrl-C (no checkpoint) left a note instead.
        texts = {note["text"] for note in notes.values() if note.get("kind") == "interrupted"}
        for text in texts:
            print(text, file=sys.stderr)
        return ended[0][1]
    # The first process that failed for a reason of its own, not because another one died.
    culprits = [(r, c) for r, c in ended if c != 0 and notes[r].get("kind") != "peer-lost"]
    rank, code = culprits[0] if culprits else next((r, c) for r, c in ended if c != 0)
    note = notes[rank]
    if note.get("kind") in ("error", "interrupted"):
        print(note["text"], file=sys.stderr)
        return int(note.get("status", code))
    if code == EXIT_INTERNAL:
        return code  # its own `specc: internal error: ...` line is already printed
    how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
    if code == -signal.SIGKILL:
        how += " (out of memory?)"
    resume = _resume_hint(folder)
    print(
        f"error: training process rank {rank} of {nproc} {how}; the other processes were stopped"
        f" — continue from the last checkpoint with `specc train --resume {resume}`",
        file=sys.stderr,
    )
    return EXIT_USER


def _signal_name(number: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(number).name
    return f"signal {number}"


def _read_note(folder: Path, rank: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        note = json.loads((folder / f"rank{rank}.json").read_text())
        if isinstance(note, dict):
            return note
    return {}


def _resume_hint(folder: Path) -> str:
    with contextlib.suppress(OSError):
        return (folder / "run_dir").read_text().strip() or "RUN_DIR"
    return "RUN_DIR"


# -- a worker of a distributed run ------------------------------------------------------------
def this_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def in_distributed_job() -> bool:
    """Whether this process is one of several (torchrun's variables, or our launcher's)."""
    with contextlib.suppress(ValueError):
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    return False


def note_run_dir(path: Path) -> None:
    """Tell the launcher (if any) where the run lives, for the hint in its messages."""
    folder = os.environ.get(LAUNCH_DIR_ENV)
    if folder and this_rank() == 0:
        with contextlib.suppress(OSError):
            (Path(folder) / "run_dir").write_text(str(path))


def peer_lost(exc: BaseException) -> bool:
    """Whether `exc` is a collective failing because another process of the run is gone."""
    import torch.distributed as dist

    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(marker in text for marker in _PEER_LOST_MARKERS)


def run_worker(body: Callable[[], int]) -> NoReturn:
    """Run one process's share of a distributed job and end the process (see the module
    docstring for why with `os._exit`). Errors: under the launcher, left for it to print;
    under torchrun, rank 0 prints a user error (every rank has the same) and every rank says
    when it lost contact with another."""
    try:
        code = body()
    except UserError as exc:
        code = _fail("error", f"error: {exc}", EXIT_USER, everywhere=False)
    except SpecError as exc:
        code = _fail("error", "\n".join(d.format() for d in exc.diagnostics), EXIT_USER, everywhere=False)
    except KeyboardInterrupt:
        code = _fail("interrupted", "interrupted", 130, everywhere=False)
    except Exception as exc:
        if not peer_lost(exc):
            raise  # a bug: the command line reports it like any other
        text = (
            f"error: rank {this_rank()}: lost contact with another training process ({_reason(exc)})"
            " — it stopped or died: see its own message"
        )
        code = _fail("peer-lost", text, EXIT_USER, everywhere=True)
    end_worker(code)


def _reason(exc: BaseException) -> str:
    """`Connection closed by peer [127.0.0.1]:13449` out of gloo's
    `[.../pair.cc:553] Connection closed by peer [127.0.0.1]:13449. This is typically ...`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # the C++ source location
    return text.split(". ")[0][:200]


def _fail(kind: str, text: str, status: int, *, everywhere: bool) -> int:
    folder = os.environ.get(LAUNCH_DIR_ENV)
    if folder:
        with contextlib.suppress(OSError):
            note = {"kind": kind, "text": text, "status": status}
            (Path(folder) / f"rank{this_rank()}.json").write_text(json.dumps(note))
    elif everywhere or this_rank() == 0:
        print(text, file=sys.stderr)
    return status


def end_worker(code: int) -> NoReturn:
    """Flush and leave at once (see the module docstring)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
