"""specc train's training speed against a hand-written plain-PyTorch loop, in the same run.

    python benchmarks/bench_train.py                      # ALL-CNN-C, batch 128, a few minutes on 2 cores
    python benchmarks/bench_train.py --rounds 5 --steps 6
    python benchmarks/bench_train.py --data cifar10 --data-dir ~/data/cifar-10-batches-py

Configurations (ALL-CNN-C, 3x32x32, 10 classes, SGD momentum 0.9, weight decay 1e-3, dropout
on, batch 128, CPU):

    baseline      a hand-written nn.Sequential ALL-CNN-C, fp32, NCHW, eager, one fixed batch:
                  what a plain PyTorch loop does
    specc         specc train's own step (`Trainer.train_step`) with its default CPU settings
                  (fp32, channels_last), fed by its in-memory loader (normalize, flip, translate 2)
    specc-fixed   the same step on one fixed pre-made batch: `specc` vs `specc-fixed` is the
                  data pipeline's cost
    specc-bf16    --precision bf16 (autocast) with channels_last, in-memory batches

Each configuration lives in its own worker process, set up as its program would be: the
baseline is a plain PyTorch process, the specc workers go through `specc train`'s own
process setup (`specc.train.setup.configure`). Only one worker runs at a time; rounds are
interleaved (every configuration once per round) so that a change of load on a shared
machine hits all of them alike. The data is the synthetic set in memory unless --data names
a real one: the loader's work is the same for both.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "backends")]

from specc.api import load  # noqa: E402
from specc.train.config import TrainConfig  # noqa: E402
from specc.train.distributed import World  # noqa: E402
from specc.train.loop import RunOptions, Trainer  # noqa: E402
from specc.train.setup import configure  # noqa: E402

BATCH = 128


# -- the baseline: ALL-CNN-C written by hand ------------------------------------------------
def allcnn_c_by_hand() -> nn.Sequential:
    """ALL-CNN-C as a plain PyTorch user writes it (He-normal weights, zero biases)."""

    def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> list[nn.Module]:
        layer = nn.Conv2d(cin, cout, kernel, stride, padding)
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
        return [layer, nn.ReLU(inplace=True)]

    return nn.Sequential(
        nn.Dropout(0.2),
        *conv(3, 96),
        *conv(96, 96),
        *conv(96, 96, stride=2),
        nn.Dropout(0.5),
        *conv(96, 192),
        *conv(192, 192),
        *conv(192, 192, stride=2),
        nn.Dropout(0.5),
        *conv(192, 192, padding=0),
        *conv(192, 192, kernel=1, padding=0),
        *conv(192, 10, kernel=1, padding=0),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def baseline_runner():
    torch.manual_seed(0)
    model = allcnn_c_by_hand()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))

    def step() -> tuple[float, float]:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()  # a real loop logs it
        return 0.0, time.perf_counter() - started

    return step


# -- specc train's own step ------------------------------------------------------------------
def specc_runner(args, out: Path, *, precision: str, fixed_batch: bool):
    """A `Trainer` as `specc train` builds it, stepping through its own loader (or one batch)."""
    graph = load(str(ROOT / "specs" / "allcnn_c.yaml"))
    recipe = {
        "dataset": args.data,
        "data_dir": args.data_dir,
        "batch_size": BATCH,
        "precision": precision,
        "augment": {"flip": True, "translate": 2},
        "device": "cpu",
    }
    if args.data == "synthetic":
        recipe["dataset_options"] = {"size": 20 * BATCH}
    cfg = TrainConfig.model_validate(recipe)
    graph = graph.replace(train=cfg.to_dict())
    configure(cfg, args.threads, World(), torch.device("cpu"))  # what `specc train` does first
    trainer = Trainer(graph, cfg, RunOptions(out=out, progress=False), World(), torch.device("cpu"))
    batches = iter(())
    epoch = 0
    first = next(iter(trainer.loader.batches()))

    def step() -> tuple[float, float]:
        """(seconds fetching the batch, seconds of the training step)."""
        nonlocal batches, epoch
        started = time.perf_counter()
        if fixed_batch:
            x, y = first
        else:
            try:
                x, y = next(batches)
            except StopIteration:
                trainer.loader.set_epoch(epoch)
                epoch += 1
                batches = trainer.loader.batches()
                x, y = next(batches)
        fetched = time.perf_counter()
        loss, _ = trainer.train_step(x, y, 0.01)
        assert torch.isfinite(loss)  # a sync per step, as the plain loop's loss.item() has
        return fetched - started, time.perf_counter() - fetched

    return step


def worker(pipe, name: str, args, out: Path) -> None:
    """One configuration in its own process: build, warm up, then time steps on request."""
    if name == "baseline":
        if args.threads:
            torch.set_num_threads(args.threads)
        step = baseline_runner()
    else:
        precision = "bf16" if name == "specc-bf16" else "fp32"
        step = specc_runner(args, out, precision=precision, fixed_batch=name == "specc-fixed")
    for _ in range(args.warmup):
        step()
    pipe.send("ready")
    while (steps := pipe.recv()) is not None:
        pipe.send([step() for _ in range(steps)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--bf16", choices=("auto", "yes", "no"), default="auto", help="auto: only where the CPU has native bf16"
    )
    args = parser.parse_args()
    native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    with_bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and native_bf16)

    names = ["baseline", "specc", "specc-fixed"] + (["specc-bf16"] if with_bf16 else [])
    context = multiprocessing.get_context("spawn")
    workers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            here, there = context.Pipe()
            process = context.Process(target=worker, args=(there, name, args, Path(tmp) / name), daemon=True)
            process.start()
            workers[name] = (process, here)
        for _, pipe in workers.values():
            assert pipe.recv() == "ready"  # built and warmed up, one after the other
        # Per step: (fetch seconds, step seconds). Rounds interleave the configurations.
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name, (_, pipe) in workers.items():
                pipe.send(args.steps)
                timings[name] += pipe.recv()
        for process, pipe in workers.values():
            pipe.send(None)
            process.join()

    # The median step is the typical speed; on a shared machine other work only ever slows a
    # step down, so the fastest step (the least disturbed one) is shown next to it.
    best = {name: BATCH / min(f + s for f, s in t) for name, t in timings.items()}
    median = {name: BATCH / statistics.median(f + s for f, s in t) for name, t in timings.items()}
    labels = {
        "baseline": "hand-written fp32 eager NCHW (baseline)",
        "specc": "specc train default (fp32, channels_last)",
        "specc-fixed": "specc train step, one fixed batch",
        "specc-bf16": "specc train --precision bf16",
    }
    print(
        f"ALL-CNN-C training, batch {BATCH}, 3x32x32, {args.data} data in memory; torch {torch.__version__},"
        f" {args.threads or torch.get_num_threads()} threads; {args.rounds} interleaved rounds x {args.steps} steps,"
        " one process per configuration"
    )
    print(f"{'configuration':44} {'median img/s':>12} {'ratio':>6} {'best img/s':>11} {'ratio':>6}")
    for name in timings:
        ratios = median[name] / median["baseline"], best[name] / best["baseline"]
        print(f"{labels[name]:44} {median[name]:12.1f} {ratios[0]:5.2f}x {best[name]:11.1f} {ratios[1]:5.2f}x")
    if not with_bf16:
        print("specc train --precision bf16: skipped — this CPU has no native bf16 (oneDNN emulates it,")
        print("  many times slower than fp32); --bf16 yes measures it anyway")
    fetch = sum(f for f, _ in timings["specc"])
    pipeline = fetch / sum(f + s for f, s in timings["specc"])
    speedup = median["specc"] / median["baseline"]
    print(
        f"data pipeline: {100 * pipeline:.1f}% of specc's step time spent producing batches"
        f" ({1000 * fetch / len(timings['specc']):.1f} ms per batch); in-memory loader vs fixed batch:"
        f" {median['specc'] / median['specc-fixed']:.3f}x (median)"
    )
    print(f"target specc default >= 1.25x baseline (medians): {'PASS' if speedup >= 1.25 else 'FAIL'} ({speedup:.2f}x)")
    print(f"target data pipeline < 5%: {'PASS' if pipeline < 0.05 else 'FAIL'} ({100 * pipeline:.1f}%)")


if __name__ == "__main__":
    main()
