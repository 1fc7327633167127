"""specc train's training speed against a hand-written plain-PyTorch loop, in the same run.

    python benchmarks/bench_train.py                      # ALL-CNN-C, batch 128, a few minutes on 2 cores
    python benchmarks/bench_train.py --rounds 20 --steps 2 --json out.json
    python benchmarks/bench_train.py --device cuda --configs baseline,hand-bf16,specc,specc-bf16 --compile
    python benchmarks/bench_train.py --data cifar10 --data-dir ~/data/cifar-10-batches-py

Configurations (ALL-CNN-C, 3x32x32, 10 classes, SGD momentum 0.9, weight decay 1e-3, dropout
on, batch 128; every one starts from the same weights, specc's seeded initialisation):

    baseline        a hand-written nn.Sequential ALL-CNN-C (benchmarks/handwritten.py), fp32,
                    NCHW, eager, one fixed batch: what a plain PyTorch loop does
    hand-cl         the same loop with the model and batch in channels_last
    hand-bf16       the same loop, channels_last, under bf16 autocast
    specc           specc train's own step (`Trainer.train_step`) with its default settings
                    (fp32, channels_last), fed by its in-memory loader (normalize, flip, translate 2)
    specc-before    specc as it was before issue 16: the step before its features (`old_step`
                    below, a copy), in a process whose OpenMP threads spin (below)
    specc-spin      specc's step in a process whose OpenMP threads spin between ops, as a
                    plain PyTorch process's do: `specc-spin` vs `specc` is the wait policy
                    (`specc.training.config.PROCESS_ENV`), `specc-before` vs `specc-spin` the step
    specc-fixed     specc's step on one fixed pre-made batch: `specc` vs `specc-fixed` is the
                    data pipeline's cost
    specc-features  specc's step with --ema 0.999 --clip-grad-norm 5 --label-smoothing 0.1
    specc-bf16      --precision bf16 (autocast) with channels_last, in-memory batches

Each configuration lives in its own worker process, set up as its program would be: the
hand-written ones are plain PyTorch processes, the specc workers go through `specc train`'s
own process setup (`specc.training.setup.configure`). Only one worker runs at a time; rounds
are interleaved (every configuration `--steps` steps per round) so that a change of load on
a shared machine hits all of them alike. Three figures per configuration: the median step,
the fastest step (the least disturbed: other work only ever slows a step down) and the
median over rounds of the ratio to the baseline within the same round (paired: robust to
load that drifts between rounds). The machine's load average is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "backends"), str(ROOT / "benchmarks")]

from handwritten import handwritten_allcnn_c, same_weights  # noqa: E402

from specc.api import load  # noqa: E402
from specc.training.config import PROCESS_ENV, TrainConfig  # noqa: E402
from specc.training.distributed import World  # noqa: E402
from specc.training.loop import RunOptions, Trainer  # noqa: E402
from specc.training.setup import configure  # noqa: E402

BATCH = 128
LABELS = {
    "baseline": "hand-written fp32 eager NCHW (baseline)",
    "hand-cl": "hand-written fp32 eager channels_last",
    "hand-bf16": "hand-written bf16 autocast channels_last",
    "specc": "specc train default (fp32, channels_last)",
    "specc-before": "specc train before issue 16 (old step, spinning)",
    "specc-spin": "specc train default, OpenMP threads spinning",
    "specc-fixed": "specc train step, one fixed batch",
    "specc-features": "specc train --ema --clip-grad-norm --label-smoothing",
    "specc-bf16": "specc train --precision bf16",
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def specc_trainer(args, out: Path, **recipe) -> Trainer:
    """A `Trainer` as `specc train` builds it (after its process setup)."""
    graph = load(str(ROOT / "specs" / "allcnn_c.yaml"))
    settings = {
        "dataset": args.data,
        "data_dir": args.data_dir,
        "batch_size": BATCH,
        "augment": {"flip": True, "translate": 2},
        "device": args.device,
        "compile": args.compile,
        **recipe,
    }
    if args.data == "synthetic":
        settings["dataset_options"] = {"size": 20 * BATCH}
    cfg = TrainConfig.model_validate(settings)
    graph = graph.replace(train=cfg.to_dict())
    device = torch.device(args.device)
    configure(cfg, args.threads, World(), device)  # what `specc train` does first
    return Trainer(graph, cfg, RunOptions(out=out, progress=False), World(), device)


# -- the hand-written loops -------------------------------------------------------------------
def hand_runner(args, out: Path, *, channels_last: bool, bf16: bool):
    """A plain PyTorch loop on one fixed batch, from specc's initial weights."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reference = specc_trainer(args, out)  # for its initial weights and a batch only
    x, y = next(iter(reference.loader.batches()))
    model = handwritten_allcnn_c()
    same_weights(reference.model, model)
    del reference
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # pyright: ignore[reportCallIssue]
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)

    def step() -> tuple[float, float]:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        loss.item()  # a real loop logs it (and it waits for the device)
        return 0.0, time.perf_counter() - started

    return step


# -- specc train's own step ------------------------------------------------------------------
def old_step(t: Trainer, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`Trainer.train_step` as it was before issue 16 (commit 6a182b0^), kept to measure the new one against."""
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    if t.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with t.autocast():
        logits = t.net(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=t.cfg.label_smoothing)
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t.optimizer.step()
    return loss.detach(), logits.detach()


def specc_runner(args, out: Path, name: str):
    """A `Trainer` stepping through its own loader (or one batch)."""
    recipe: dict = {"precision": "bf16" if name == "specc-bf16" else "fp32"}
    if name == "specc-features":
        recipe |= {"ema": 0.999, "clip_grad_norm": 5.0, "label_smoothing": 0.1}
    trainer = specc_trainer(args, out, **recipe)
    device = torch.device(args.device)
    step_of = (lambda x, y, lr: old_step(trainer, x, y, lr)) if name == "specc-before" else trainer.train_step
    batches, epoch = iter(()), 0
    first = next(iter(trainer.loader.batches()))

    def step() -> tuple[float, float]:
        """(seconds fetching the batch, seconds of the training step)."""
        nonlocal batches, epoch
        started = time.perf_counter()
        if name == "specc-fixed":
            x, y = first
        else:
            try:
                x, y = next(batches)
            except StopIteration:
                trainer.loader.set_epoch(epoch)
                epoch += 1
                batches = trainer.loader.batches()
                x, y = next(batches)
        sync(device)
        fetched = time.perf_counter()
        loss, _ = step_of(x, y, 0.01)
        assert torch.isfinite(loss)  # a sync per step, as the plain loop's loss.item() has
        return fetched - started, time.perf_counter() - fetched

    return step


def worker(pipe, name: str, args, out: Path) -> None:
    """One configuration in its own process: build, warm up, then time steps on request."""
    if name.startswith(("baseline", "hand")):
        step = hand_runner(args, out, channels_last=name != "baseline", bf16=name == "hand-bf16")
    else:
        step = specc_runner(args, out, name)
    for _ in range(args.warmup):
        step()
    pipe.send("ready")
    while (steps := pipe.recv()) is not None:
        pipe.send([step() for _ in range(steps)])


# -- the run ---------------------------------------------------------------------------------
@contextlib.contextmanager
def process_env(name: str):
    """The environment a configuration's process starts with: `specc train`'s own
    (PROCESS_ENV, which it sets before importing torch) for the specc configurations, the
    plain one otherwise. A variable the user exported applies to all of them."""
    specc = name.startswith("specc") and name not in ("specc-spin", "specc-before")
    saved = dict(os.environ)
    for key, value in PROCESS_ENV.items():
        if key not in saved:
            if specc:
                os.environ[key] = value
            else:
                os.environ.pop(key, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def measure(args, names: list[str]) -> dict[str, list[list[tuple[float, float]]]]:
    """Per configuration, per round, per step: (fetch seconds, step seconds)."""
    context = multiprocessing.get_context("spawn")
    workers = {}
    timings: dict[str, list[list[tuple[float, float]]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            here, there = context.Pipe()
            process = context.Process(target=worker, args=(there, name, args, Path(tmp) / name), daemon=True)
            with process_env(name):
                process.start()
            workers[name] = (process, here)
        for _, pipe in workers.values():
            assert pipe.recv() == "ready"  # built and warmed up, one after the other
        for _ in range(args.rounds):
            for name, (_, pipe) in workers.items():
                pipe.send(args.steps)
                timings[name].append(pipe.recv())
        for process, pipe in workers.values():
            pipe.send(None)
            process.join()
    return timings


def summarise(timings: dict[str, list[list[tuple[float, float]]]]) -> dict[str, dict[str, float]]:
    """img/s (median and best step) and ratios to the baseline (medians, bests, paired rounds)."""
    steps = {name: [f + s for f, s in (x for r in rounds for x in r)] for name, rounds in timings.items()}
    per_round = {name: [statistics.median(f + s for f, s in r) for r in rounds] for name, rounds in timings.items()}
    out = {}
    for name in timings:
        median, best = BATCH / statistics.median(steps[name]), BATCH / min(steps[name])
        paired = [b / c for b, c in zip(per_round["baseline"], per_round[name])]
        out[name] = {"median_img_s": median, "best_img_s": best, "paired_ratio": statistics.median(paired)}
    for name in timings:
        out[name]["median_ratio"] = out[name]["median_img_s"] / out["baseline"]["median_img_s"]
        out[name]["best_ratio"] = out[name]["best_img_s"] / out["baseline"]["best_img_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (hand-written and specc)")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--configs", default=None, help="comma-separated configurations (baseline is always run)")
    parser.add_argument(
        "--bf16", choices=("auto", "yes", "no"), default="auto", help="auto: only where the device has native bf16"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    if args.device == "cuda":
        native_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    with_bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and native_bf16)
    default = ["hand-cl", "specc", "specc-spin", "specc-before", "specc-fixed"] + (
        ["hand-bf16", "specc-bf16"] if with_bf16 else []
    )
    chosen = args.configs.split(",") if args.configs else default
    unknown = [c for c in chosen if c not in LABELS]
    if unknown:
        parser.error(f"--configs: unknown {', '.join(unknown)} — choose from {', '.join(LABELS)}")
    names = ["baseline"] + [c for c in chosen if c != "baseline"]

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    timings = measure(args, names)
    figures = summarise(timings)
    load_after = os.getloadavg()[0]
    report(args, names, timings, figures, (load_before, load_after), time.perf_counter() - started, with_bf16)


def report(args, names, timings, figures, load, seconds, with_bf16) -> None:
    threads = args.threads or (os.cpu_count() if args.device == "cpu" else torch.get_num_threads())
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {threads} threads"
    print(
        f"ALL-CNN-C training, batch {BATCH}, 3x32x32, {args.data} data; torch {torch.__version__}, {device}"
        f"{', compiled' if args.compile else ''}; {args.rounds} interleaved rounds x {args.steps} steps, one"
        f" process per configuration; {seconds:.0f} s; load average {load[0]:.1f} -> {load[1]:.1f}"
        f" on {os.cpu_count()} cores"
    )
    print(f"{'configuration':52} {'median img/s':>12} {'ratio':>6} {'best img/s':>11} {'ratio':>6} {'paired':>7}")
    for name in names:
        f = figures[name]
        print(
            f"{LABELS[name]:52} {f['median_img_s']:12.1f} {f['median_ratio']:5.2f}x {f['best_img_s']:11.1f}"
            f" {f['best_ratio']:5.2f}x {f['paired_ratio']:6.2f}x"
        )
    if not with_bf16 and args.bf16 == "auto":
        print("bf16: skipped — this device has no native bf16 (oneDNN would emulate it); --bf16 yes measures it anyway")
    if "specc" in timings:
        fetch = sum(f for r in timings["specc"] for f, _ in r)
        total = sum(f + s for r in timings["specc"] for f, s in r)
        pipeline = fetch / total
        print(f"data pipeline: {100 * pipeline:.1f}% of specc's step time spent producing batches")
        speedup = figures["specc"]["paired_ratio"]
        verdict = "PASS" if speedup >= 1.25 else "FAIL"
        print(f"target specc default >= 1.25x baseline (paired rounds): {verdict} ({speedup:.2f}x)")
    if args.json:
        record = {"device": device, "rounds": args.rounds, "steps": args.steps, "load": load, "figures": figures}
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
