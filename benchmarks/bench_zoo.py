"""The zoo against the same networks written by hand: ResNet-50 and MobileNetV2 built by
`specc.build` from specs/zoo/ vs tests/zoo_reference.py (plain torch.nn, torchvision's
structure), with the same weights.

1. Training step (forward, cross-entropy, backward, SGD with momentum) at batch 16: CPU
   seconds of this process per step, the two models in interleaved rounds (A B B A, then
   B A A B, ...) so that a neighbour's load hits both alike. Target: specc / hand-written
   >= 0.98 (images per CPU-second).
2. Inference at batch 1: onnxruntime on specc's ONNX (batch norm folded) vs torch eager on
   the hand-written network, median latency, interleaved rounds.

    python benchmarks/bench_zoo.py [--rounds 3] [--size 224] [--threads 1] [--models resnet50 mobilenet_v2]

One thread by default: on a shared machine a second OpenMP thread mostly waits for the
first, and CPU time is then exact. Outputs are checked to agree before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.zoo_reference: the hand-written networks

import specc  # noqa: E402
from specc_onnx import emit, to_bytes  # noqa: E402
from specc_onnx.runtime import make_session  # noqa: E402
from specc_torch.weights import state_dict_numpy  # noqa: E402
from tests.zoo_reference import REFERENCES, copy_weights  # noqa: E402

TARGET = 0.98


def train_step_cpu(model: nn.Module, opt: torch.optim.Optimizer, x, y) -> tuple[float, float]:
    """(CPU seconds, of which system time) of this process for one training step. The system
    time is mostly page faults: glibc hands tensors above 32 MiB out as fresh mmaps."""
    start = os.times()
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    end = os.times()
    system = end.system - start.system
    return end.user - start.user + system, system


def training(models: dict[str, nn.Module], batch: int, size: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(CPU seconds, of which system) of each model's training steps, A B B A / B A A B rounds."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = torch.randint(0, 1000, (batch,), generator=g)
    opts = {n: torch.optim.SGD(m.train().parameters(), lr=0.01, momentum=0.9) for n, m in models.items()}
    for name, model in models.items():  # warm-up: allocator, oneDNN primitives
        train_step_cpu(model, opts[name], x, y)
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order + order[::-1]:
            seconds[name].append(train_step_cpu(models[name], opts[name], x, y))
        print(f"    round {r + 1}: " + ", ".join(f"{n} {seconds[n][-1][0] + seconds[n][-2][0]:.2f} s" for n in models))
    return seconds


def latency(runs: dict, x: np.ndarray, rounds: int, per_round: int = 10) -> dict[str, float]:
    """Median seconds per batch-1 call of each contender, interleaved round by round."""
    for run in runs.values():
        for _ in range(3):
            run(x)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            for _ in range(per_round):
                start = time.perf_counter()
                run(x)
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def bench(name: str, args) -> None:
    spec = ROOT / "specs" / "zoo" / f"{name}.yaml"
    built = specc.build(spec, seed=0, overrides=[f"input.size={args.size}"])
    plain = REFERENCES[name]()
    copy_weights(built.state_dict(), plain)
    probe = torch.randn(2, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = built.eval()(probe), plain.eval()(probe)
    assert torch.allclose(a, b, rtol=0, atol=1e-4 * float(b.abs().max())), f"{name}: the two networks disagree"
    print(f"{name} ({args.size}x{args.size}): outputs agree")

    session = make_session(to_bytes(emit(built.graph, state_dict_numpy(built))), ["CPUExecutionProvider"], args.threads)

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return plain(torch.from_numpy(x)).numpy()

    runs = {"ORT specc": lambda x: session.run(None, {"input": x})[0], "torch eager": eager}
    x1 = probe[:1].numpy()
    error = float(np.abs(runs["ORT specc"](x1) - eager(x1)).max() / np.abs(eager(x1)).max())
    assert error <= 1e-4, f"{name}: onnxruntime disagrees with eager by {error:.1e} (relative)"
    median = latency(runs, x1, args.rounds)
    print(
        f"  batch-1 latency: ORT on specc's ONNX {median['ORT specc'] * 1e3:.1f} ms,"
        f" torch eager (hand-written) {median['torch eager'] * 1e3:.1f} ms:"
        f" {median['torch eager'] / median['ORT specc']:.2f}x (>1: ORT faster)"
    )

    # Training last: the steps move the two networks' weights apart (dropout masks differ).
    print(f"  training step, batch {args.batch}, {args.rounds} rounds:")
    steps = training({"specc": built, "hand-written": plain}, args.batch, args.size, args.rounds)
    seconds = {n: [cpu for cpu, _ in s] for n, s in steps.items()}
    # Mean over all steps; and the fastest step, since a neighbour's cache and memory traffic
    # only ever slow a step down (CPU time hides its scheduling, not those).
    for what, pick in (("mean", statistics.mean), ("fastest step", min)):
        rate = {n: args.batch / pick(s) for n, s in seconds.items()}
        ratio = rate["specc"] / rate["hand-written"]
        print(
            f"  {what:>12}: specc {rate['specc']:.2f} img/CPU-s, hand-written {rate['hand-written']:.2f} img/CPU-s,"
            f" ratio {ratio:.3f} (target >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'})"
        )
    system = {n: statistics.mean(sys_s for _, sys_s in s) for n, s in steps.items()}
    print(
        f"  system time per step (page faults): specc {system['specc']:.2f} s,"
        f" hand-written {system['hand-written']:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["resnet50", "mobilenet_v2"], choices=["resnet50", "mobilenet_v2"]
    )
    parser.add_argument("--batch", type=int, default=16, help="training batch (default 16)")
    parser.add_argument("--size", type=int, default=224, help="input size (default 224)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime

    print(
        f"{args.threads} thread(s) on {os.cpu_count()} CPUs, torch {torch.__version__},"
        f" onnxruntime {onnxruntime.__version__}"
    )
    for name in args.models:
        bench(name, args)
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"note: 1-minute load average {load:.1f} at the end — other jobs shared the CPUs; latencies are noisy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
