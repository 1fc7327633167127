"""How fast are specc's explanations? Two measurements on ALL-CNN-C (seeded weights), CPU:

1. Guided backprop of a class, time per image at batch 1 and 32: `specc_viz.explain` (both
   engines) against Captum's `GuidedBackprop` on the same network hand-written with
   `nn.ReLU` modules (Captum hooks modules; specc's own ReLUs are functional), same weights.
   The maps are checked equal first. Target: specc no slower than Captum.
2. 64 channels of conv6 on one image: one batched `explain` call against 64 calls of one
   unit each (and against one forward pass followed by 64 autograd backward calls). Target:
   >= 5x. On a CPU the bound is about (forward + backward) / backward ~ 2 when batch-1
   convolutions run as efficiently as batched ones (one thread); batching gains more where
   they do not (several threads, a GPU).

Runs alternate (A B A B ...) within each repeat and each side keeps its best, so that other
processes on the machine slow both alike. `--threads 1` avoids OpenMP threads spinning on a
loaded machine, which makes batch-1 timings erratic.

    pip install captum   # benchmark-only dependency (extra "bench")
    python benchmarks/bench_explain.py [--repeats 3] [--threads N] [--units 64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from handwritten import handwritten_allcnn_c, same_weights  # benchmarks/ is on sys.path

import specc
import specc_viz

SPEC = Path(__file__).resolve().parents[1] / "specs" / "allcnn_c.yaml"
TARGET = 3


def best_times(candidates: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Each candidate's best (wall, CPU) seconds over `repeats` rounds, run alternately after a
    warm-up. CPU time of this process hardly moves when other processes share the cores."""
    for fn in candidates.values():
        fn()
    best = {name: (float("inf"), float("inf")) for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def per_image(model, baseline, repeats: int) -> None:
    from captum.attr import GuidedBackprop

    captum = GuidedBackprop(baseline)
    for batch in (1, 32):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        ours = specc_viz.explain(model, x, units=TARGET, method="guided", seed="one")
        theirs = captum.attribute(x, target=TARGET)
        error = (ours - theirs).abs().max().item() / theirs.abs().max().item()
        assert error < 1e-4, f"specc and Captum disagree: relative error {error:.2e}"
        times = best_times(
            {
                "captum GuidedBackprop": lambda x=x: captum.attribute(x, target=TARGET),
                "specc explain (replay)": lambda x=x: specc_viz.explain(
                    model, x, units=TARGET, method="guided", seed="one", engine="replay"
                ),
                "specc explain (autograd)": lambda x=x: specc_viz.explain(
                    model, x, units=TARGET, method="guided", seed="one", engine="autograd"
                ),
            },
            repeats,
        )
        (base, base_cpu) = times["captum GuidedBackprop"]
        print(f"\nguided backprop of class {TARGET}, batch {batch} (maps agree: max relative difference {error:.1e})")
        for name, (wall, cpu) in times.items():
            print(
                f"  {name:26s} {1000 * wall / batch:8.2f} ms/image ({1000 * cpu / batch:7.2f} CPU)"
                f"   captum / this = {base / wall:5.2f}x ({base_cpu / cpu:5.2f}x CPU)"
            )


def single_backward_calls(model, x, channels: list[int]) -> list[torch.Tensor]:
    """One forward under the rule pass, then one autograd backward call per unit."""
    with specc_viz.inference_state(model, freeze=True), specc_viz.backward_rules(model, "guided"):
        x = x.clone().requires_grad_(True)
        a = model(x, stop_at="conv6")[0]
        maps = []
        for c in channels:
            seed = torch.zeros_like(a)
            seed[:, c] = a[:, c].detach()
            maps.append(torch.autograd.grad(a, x, seed, retain_graph=True)[0])
    return maps


def many_units(model, units: int, repeats: int) -> None:
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    channels = list(range(units))
    batched = specc_viz.explain(model, x, layer="conv6", units=channels)
    single = torch.stack([specc_viz.explain(model, x, layer="conv6", units=[c])[:, 0] for c in channels], dim=1)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.stack(single_backward_calls(model, x, channels), dim=1), single)
    times = best_times(
        {
            "one at a time": lambda: [specc_viz.explain(model, x, layer="conv6", units=[c]) for c in channels],
            "1 forward, 64 backward calls": lambda: single_backward_calls(model, x, channels),
            "batched (replay)": lambda: specc_viz.explain(model, x, layer="conv6", units=channels, engine="replay"),
            "batched (autograd, vmap)": lambda: specc_viz.explain(
                model, x, layer="conv6", units=channels, engine="autograd"
            ),
        },
        repeats,
    )
    (base, base_cpu) = times["one at a time"]
    print(f"\n{units} channels of conv6, one image, guided (same maps batched and one at a time)")
    for name, (wall, cpu) in times.items():
        print(
            f"  {name:26s} {wall:8.3f} s ({cpu:7.3f} CPU)"
            f"   one-at-a-time / this = {base / wall:5.2f}x ({base_cpu / cpu:5.2f}x CPU)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--units", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = specc.build(SPEC, seed=0).eval()
    baseline = handwritten_allcnn_c(inplace=False).eval()
    same_weights(model, baseline)
    print(f"ALL-CNN-C, torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of {args.repeats}")
    per_image(model, baseline, args.repeats)
    many_units(model, args.units, args.repeats)


if __name__ == "__main__":
    main()
