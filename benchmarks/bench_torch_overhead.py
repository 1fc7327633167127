"""Does specc add overhead? ALL-CNN-C built by `specc.build` against the same network
hand-written in plain PyTorch, with the same weights: training-step throughput (forward,
backward, SGD step) at batch 128 on the CPU. Target: ratio specc / hand-written >= 0.98.

The two models run in alternating order (A B B A ...) within each repeat so that drift of the
machine (other processes, thermal state) hits both alike. Other processes only ever slow a run
down, so the wall-clock ratio compares each model's best run; the ratio of images per CPU-second
of this process is printed too — it hardly moves when other processes share the CPUs
(`--threads 1` makes it exact: no OpenMP threads spinning while they wait for each other). A second, small measurement shows the per-call dispatch cost where it
is most visible: a batch-1 forward pass without autograd.

    python benchmarks/bench_torch_overhead.py [--batch 128] [--steps 1] [--warmup 1] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from handwritten import handwritten_allcnn_c, same_weights  # benchmarks/ is on sys.path
from torch import nn

import specc

SPEC = Path(__file__).resolve().parents[1] / "specs" / "allcnn_c.yaml"


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, x, y, steps: int) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) for `steps` training steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def fastest_forward(model: nn.Module, x, calls: int) -> float:
    """Seconds of the fastest of `calls` forward passes (interference only ever slows a call)."""
    fastest = float("inf")
    with torch.no_grad():
        for _ in range(calls):
            start = time.perf_counter()
            model(x)
            fastest = min(fastest, time.perf_counter() - start)
    return fastest


def measure(models: dict, opts: dict, x, y, args) -> tuple[dict, dict]:
    """Per model, the wall-clock and CPU seconds of each timed run, A B B A within each repeat."""
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.repeats):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order + order[::-1]:  # each model once early and once late
            seconds, cpu_seconds = train_steps(models[name], opts[name], x, y, args.steps)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
        rates = {n: 2 * args.steps * args.batch / sum(wall[n][-2:]) for n in models}
        print(
            f"  repeat {r + 1}: specc {rates['specc']:6.1f} img/s, hand-written {rates['hand-written']:6.1f} img/s,"
            f" ratio {rates['specc'] / rates['hand-written']:.3f}"
        )
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1, help="timed training steps per model per repeat")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps per model first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (default: torch's choice); 1 is steadiest on a busy machine",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    specc_model = specc.build(SPEC, seed=args.seed)  # logits: the trailing softmax dropped
    plain = handwritten_allcnn_c()
    same_weights(specc_model, plain)
    models = {"specc": specc_model.train(), "hand-written": plain.train()}
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (args.batch,), generator=generator)
    with torch.no_grad():
        a, b = specc_model.eval()(x[:4]), plain.eval()(x[:4])
        assert torch.allclose(a, b, atol=1e-5), "the two networks disagree"
    opts = {
        name: torch.optim.SGD(m.train().parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
        for name, m in models.items()
    }
    print(
        f"ALL-CNN-C training step, batch {args.batch}, CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    for name, model in models.items():
        train_steps(model, opts[name], x, y, args.warmup)

    wall, cpu = measure(models, opts, x, y, args)
    images = args.steps * args.batch
    best = {n: images / min(v) for n, v in wall.items()}
    per_cpu = {n: images * len(v) / sum(v) for n, v in cpu.items()}
    for n in models:
        print(f"{n:13s} {best[n]:7.1f} images/s (best of {len(wall[n])} runs), {per_cpu[n]:7.1f} images per CPU-second")
    ratio, cpu_ratio = best["specc"] / best["hand-written"], per_cpu["specc"] / per_cpu["hand-written"]
    verdict = {True: "met", False: "NOT met"}
    print(f"ratio specc / hand-written: {ratio:.3f} wall-clock best-of (target >= 0.98: {verdict[ratio >= 0.98]})")
    print(f"ratio specc / hand-written: {cpu_ratio:.3f} CPU time (target >= 0.98: {verdict[cpu_ratio >= 0.98]})")

    # Dispatch cost: tiny forward passes, where Python per-layer work is not hidden by compute.
    one = x[:1]
    for model in models.values():
        model.eval()
        fastest_forward(model, one, 5)
    us = {n: 1e6 * fastest_forward(models[n], one, 40) for n in models}
    print(
        f"batch-1 eval forward, fastest call: specc {us['specc']:.0f} us, hand-written {us['hand-written']:.0f} us"
        f" (ratio {us['hand-written'] / us['specc']:.3f})"
    )
    load = os.getloadavg()[0]
    if load > 1.5 * torch.get_num_threads():
        print(
            f"note: load average {load:.1f} on {os.cpu_count()} CPUs — other processes shared them; wall-clock is noisy"
        )


if __name__ == "__main__":
    main()
