"""Running the ablation's trainings: one at a time in this process, or `jobs` at a time in
spawned processes that split the machine's threads between them.

Each training is an ordinary `specc train` run (`specc.training.loop.train`) in its own run
directory, so `specc eval`, `specc visualize` and `specc train --resume` work on it as on any
other. Its console output goes to RUN_DIR/train.log; this module prints one line per run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable

from specc.ablate.plan import LAST, MARKER, RESULT, Task, write_json
from specc.errors import UserError


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int, total: int | None = None) -> int:
    """Each of `jobs` parallel trainings gets an equal share of the threads, at least one."""
    return max(1, (total or available_cores()) // jobs)


def run_task(task: Task) -> dict:
    """Train (or resume) one run to its end and write its result.json; returns the result.

    A diverged run (NaN loss, typically a learning rate too high) is a result too — the
    learning-rate search has to see it — and is recorded as such. Ctrl-C/SIGTERM stop the
    run with a checkpoint and raise `Interrupted`.
    """
    from specc.spec import load_graph_text
    from specc.training.checkpoint import read_for_resume
    from specc.training.config import recipe_of
    from specc.training.inputs import check_fits
    from specc.training.loop import RunOptions, TrainingDiverged, train

    task.run_dir.mkdir(parents=True, exist_ok=True)
    graph = load_graph_text(task.spec, str(task.run_dir / "spec.yaml"))
    cfg = recipe_of(graph.train)
    check_fits(graph, cfg)
    resume = read_for_resume(task.run_dir) if (task.run_dir / LAST).exists() else None
    write_json(task.run_dir / MARKER, _identity(task))
    options = RunOptions(
        out=task.run_dir,
        resume=resume,
        threads=task.threads,
        command=("specc", "ablate", task.name),
        progress=False,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    with open(task.run_dir / "train.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            summary = train(graph, cfg, options)
            result = _identity(task) | {"status": "done"} | _final(summary["last"])
        except TrainingDiverged as exc:
            print(f"diverged: {exc}")
            result = _identity(task) | {"status": "diverged", "message": str(exc)}
        except UserError as exc:
            print(f"error: {exc}")
            raise UserError(f"{task.name}: {exc} (log: {task.run_dir / 'train.log'})") from None
    # CPU time next to wall time: on a shared machine the wall clock says more about the
    # neighbours than about the network.
    result["wall_seconds"] = round(time.perf_counter() - started, 3)
    result["cpu_seconds"] = round(time.process_time() - cpu_started, 3)
    write_json(task.run_dir / RESULT, result)
    return result


def _identity(task: Task) -> dict:
    return {"variant": task.variant, "lr": task.lr, "seed": task.seed, "key": task.key, "recipe": task.recipe}


def _final(row: dict) -> dict:
    """The last epoch's numbers: the ablation compares networks at the end of training, as
    the paper does — not at their best test epoch, which would choose on the test set."""
    out = {
        "epochs": row["epoch"],
        "train_loss": row["train_loss"],
        "test_error": 1.0 - row["test_acc"],
        "test_loss": row["test_loss"],
        "seconds": row["elapsed"],
    }
    if "val_acc" in row:
        out |= {"val_error": 1.0 - row["val_acc"], "val_loss": row["val_loss"]}
    return out


def _init_worker(threads: int) -> None:
    # Before torch is imported in this process: OpenMP reads the variable once.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    # Idle workers ignore Ctrl-C; a training worker installs its own handler, which writes a
    # checkpoint and stops, so one Ctrl-C leaves every run resumable.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def execute(tasks: Iterable[Task], jobs: int, on_done: Callable[[Task, dict], None]) -> None:
    """Run `tasks`, `jobs` at a time; `on_done(task, result)` after each, in this process."""
    tasks = list(tasks)
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            on_done(task, run_task(task))
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: a forked child would inherit this process's torch thread pools.
    context = multiprocessing.get_context("spawn")
    threads = tasks[0].threads or threads_per_job(jobs)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        running = {pool.submit(run_task, task): task for task in tasks}
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    on_done(task, future.result())
        except BaseException:
            # Let the runs in flight write their checkpoints, start no new one.
            for future in running:
                future.cancel()
            raise


def describe_status(tasks: list[Task]) -> dict[str, list[Task]]:
    """The tasks by status: done, interrupted, new."""
    out: dict[str, list[Task]] = {"done": [], "interrupted": [], "new": []}
    for task in tasks:
        out[task.status()].append(task)
    return out


def progress_line(index: int, total: int, task: Task, result: dict) -> str:
    """`[3/8] convpool lr0.05 seed0: test error 9.12%, val 9.40% (4m02s)`."""
    head = f"[{index}/{total}] {task.name}:"
    if result["status"] != "done":
        return f"{head} diverged — {result.get('message', '')}"
    text = f"{head} test error {100 * result['test_error']:.2f}%"
    if "val_error" in result:
        text += f", val {100 * result['val_error']:.2f}%"
    return text + f" ({duration(result['seconds'])})"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def interrupted_message(out) -> str:
    return (
        f"interrupted: finished runs are kept, the current ones checkpointed — run the same command to continue ({out})"
    )
