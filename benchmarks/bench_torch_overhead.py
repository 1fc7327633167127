"""Does specc add overhead? ALL-CNN-C built by `specc_torch.build` against the same network
hand-written in plain PyTorch, with the same weights: training-step throughput (forward,
backward, SGD step) at batch 128 on the CPU. Target: ratio specc / hand-written >= 0.98.

The two models run in alternating order (A B B A ...) within each repeat so that drift of the
machine (other processes, thermal state) hits both alike; the ratio is the median of the
per-repeat ratios, measured in this run. A second, small measurement shows the per-call
dispatch cost where it is most visible: a batch-1 forward pass without autograd.

    python benchmarks/bench_torch_overhead.py [--batch 128] [--steps 3] [--warmup 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import specc_torch
import torch
from torch import nn

SPEC = Path(__file__).resolve().parents[1] / "specs" / "allcnn_c.yaml"


def conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), nn.ReLU(inplace=True)]


def handwritten_allcnn_c(classes: int = 10) -> nn.Sequential:
    """ALL-CNN-C (Springenberg et al. 2015, Table 2) as one would write it by hand."""
    return nn.Sequential(
        nn.Dropout(0.2),
        *conv(3, 96, 3),
        *conv(96, 96, 3),
        *conv(96, 96, 3, stride=2),
        nn.Dropout(0.5),
        *conv(96, 192, 3),
        *conv(192, 192, 3),
        *conv(192, 192, 3, stride=2),
        nn.Dropout(0.5),
        *conv(192, 192, 3, padding=0),
        *conv(192, 192, 1, padding=0),
        *conv(192, classes, 1, padding=0),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def same_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy parameters in order (both list them layer by layer, weight before bias)."""
    pairs = list(zip(source.state_dict().values(), target.state_dict().items()))
    assert len(pairs) == len(target.state_dict()) == len(source.state_dict())
    assert all(value.shape == mine.shape for value, (_, mine) in pairs)
    target.load_state_dict({key: value.clone() for value, (key, _) in pairs})


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, x, y, steps: int) -> float:
    """Seconds for `steps` training steps."""
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def forward_calls(model: nn.Module, x, calls: int) -> float:
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(calls):
            model(x)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per model per repeat")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps per model first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    specc_model = specc_torch.build(SPEC, seed=args.seed)  # logits: the trailing softmax dropped
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

    rates: dict[str, list[float]] = {name: [] for name in models}
    ratios = []
    for r in range(args.repeats):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order + order[::-1]:  # A B B A: each model once early and once late
            seconds = train_steps(models[name], opts[name], x, y, args.steps)
            rates[name].append(args.steps * args.batch / seconds)
        this = [sum(rates[n][-2:]) / 2 for n in ("specc", "hand-written")]
        ratios.append(this[0] / this[1])
        print(
            f"  repeat {r + 1}: specc {this[0]:7.1f} img/s   hand-written {this[1]:7.1f} img/s   ratio {ratios[-1]:.3f}"
        )
    med = {n: statistics.median(v) for n, v in rates.items()}
    ratio = statistics.median(ratios)
    print(f"specc        {med['specc']:8.1f} images/s (median)")
    print(f"hand-written {med['hand-written']:8.1f} images/s (median)")
    print(f"ratio specc / hand-written: {ratio:.3f}  (target >= 0.98: {'met' if ratio >= 0.98 else 'NOT met'})")

    # Dispatch cost: tiny forward passes, where Python per-layer work is not hidden by compute.
    one = x[:1]
    calls = 200
    for model in models.values():
        model.eval()
        forward_calls(model, one, 20)
    per_call = {}
    for name in list(models) + list(models)[::-1]:
        per_call.setdefault(name, []).append(forward_calls(models[name], one, calls) / calls)
    us = {n: 1e6 * min(v) for n, v in per_call.items()}
    print(
        f"batch-1 eval forward: specc {us['specc']:.0f} us, hand-written {us['hand-written']:.0f} us"
        f" (ratio {us['hand-written'] / us['specc']:.3f})"
    )


if __name__ == "__main__":
    main()
