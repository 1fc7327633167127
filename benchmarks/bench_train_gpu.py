"""specc train's training step on a GPU against a hand-written PyTorch loop with the same
weights, in the same process, in interleaved rounds.

    python benchmarks/bench_train_gpu.py                        # CUDA, ALL-CNN-C, batch 256
    python benchmarks/bench_train_gpu.py --json out.json --rounds 5
    python benchmarks/bench_train_gpu.py --device cpu --batch 8 --rounds 1 --steps 1 --no-compile   # a smoke run

Configurations (ALL-CNN-C, 3x32x32, 10 classes, SGD momentum 0.9, weight decay 1e-3):

    hand-fp32           hand-written nn.Sequential, fp32 eager NCHW, one fixed batch on the
                        device, no host sync per step (the fastest plain loop)
    hand-bf16-cl        the same under bf16 autocast with channels_last
    specc-fp32          `specc train`'s own step (`Trainer.train_step`) with its defaults
                        (fp32, channels_last), fed by its in-memory loader on the device
    specc-bf16-cl       --precision bf16 (channels_last)
    specc-bf16-compile  --precision bf16 --compile

Every configuration starts from the specc model's seeded weights (`handwritten.same_weights`).
On CUDA, TF32 is on for all of them (`specc train` turns it on; the hand loop gets it too), and
each timed block ends with `torch.cuda.synchronize()`. Ratios: specc vs the hand loop in the
same precision (target >= 0.98), and bf16 + channels_last vs fp32 eager (target >= 2).
"""

from __future__ import annotations

import argparse
import json
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
from specc.training.config import TrainConfig  # noqa: E402
from specc.training.distributed import World  # noqa: E402
from specc.training.loop import RunOptions, Trainer  # noqa: E402
from specc.training.setup import configure  # noqa: E402

CONFIGS = ("hand-fp32", "hand-bf16-cl", "specc-fp32", "specc-bf16-cl", "specc-bf16-compile")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def specc_trainer(device: torch.device, batch: int, precision: str, compile: bool, out: Path) -> Trainer:
    """A `Trainer` as `specc train --device D --precision P [--compile]` builds it."""
    graph = load(str(ROOT / "specs" / "allcnn_c.yaml"))
    recipe = {
        "dataset": "synthetic",
        "dataset_options": {"size": 8 * batch},
        "batch_size": batch,
        "precision": precision,
        "compile": compile,
        "augment": {"flip": True, "translate": 2},
        "device": device.type,
    }
    cfg = TrainConfig.model_validate(recipe)
    graph = graph.replace(train=cfg.to_dict())
    configure(cfg, None, World(), device)  # what `specc train` does first (cuDNN benchmark, TF32)
    return Trainer(graph, cfg, RunOptions(out=out, progress=False), World(), device)


def specc_step(trainer: Trainer):
    batches, epoch = iter(()), 0

    def step() -> None:
        nonlocal batches, epoch
        try:
            x, y = next(batches)
        except StopIteration:
            epoch += 1
            trainer.loader.set_epoch(epoch)
            batches = trainer.loader.batches()
            x, y = next(batches)
        trainer.train_step(x, y, 0.01)

    return step


def hand_step(reference: torch.nn.Module, device: torch.device, batch: int, bf16: bool):
    """The hand-written loop, starting from `reference`'s weights."""
    model = handwritten_allcnn_c().to(device)
    same_weights(reference, model)
    memory = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=memory)  # pyright: ignore[reportCallIssue]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=generator).to(device).contiguous(memory_format=memory)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        optimizer.step()

    return step


def steps_of(device: torch.device, batch: int, configs: list[str], out: Path) -> dict:
    reference = specc_trainer(device, batch, "fp32", False, out / "specc-fp32")
    steps = {"specc-fp32": specc_step(reference)}
    for name in configs:
        if name.startswith("hand"):
            steps[name] = hand_step(reference.model, device, batch, bf16="bf16" in name)
        elif name != "specc-fp32":
            trainer = specc_trainer(device, batch, "bf16", name.endswith("compile"), out / name)
            trainer.model.load_state_dict(reference.model.state_dict())  # the same weights
            steps[name] = specc_step(trainer)
    return {name: steps[name] for name in configs}


def measure(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_train_gpu: --device cuda but torch sees no CUDA device")
    if device.type == "cuda":  # the hand loop gets what `specc train` turns on
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    configs = [c for c in CONFIGS if not (args.no_compile and c.endswith("compile"))]
    with tempfile.TemporaryDirectory() as tmp:
        steps = steps_of(device, args.batch, configs, Path(tmp))
        warm: dict[str, float] = {}
        compile_error = None
        for name, step in list(steps.items()):  # warm-up, compile included
            started = time.perf_counter()
            try:
                for _ in range(max(args.warmup, 1) if name.endswith("compile") else args.warmup):
                    step()
                sync(device)
            except Exception as exc:  # noqa: BLE001 - torch.compile needs triton and a C compiler: the rest still counts
                if not name.endswith("compile"):
                    raise
                compile_error = f"{type(exc).__name__}: {exc}"[:300]
                del steps[name]
                continue
            warm[name] = time.perf_counter() - started
        rates: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                sync(device)
                started = time.perf_counter()
                for _ in range(args.steps):
                    step()
                sync(device)
                rates[name].append(args.batch * args.steps / (time.perf_counter() - started))
    median = {name: statistics.median(r) for name, r in rates.items()}
    ratios = {
        "specc-fp32 / hand-fp32": median["specc-fp32"] / median["hand-fp32"],
        "specc-bf16-cl / hand-bf16-cl": median["specc-bf16-cl"] / median["hand-bf16-cl"],
        "specc-bf16-cl / hand-fp32": median["specc-bf16-cl"] / median["hand-fp32"],
    }
    if "specc-bf16-compile" in median:
        ratios["specc-bf16-compile / hand-fp32"] = median["specc-bf16-compile"] / median["hand-fp32"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "device": name,
        "torch": str(torch.__version__),
        "batch": args.batch,
        "rounds": args.rounds,
        "steps": args.steps,
        "images_per_s": median,
        "per_round": rates,
        "warmup_seconds": warm,
        "ratios": ratios,
        "compile_error": compile_error,
        "targets": {
            "specc default >= 0.98x hand-written, same precision": min(ratios["specc-fp32 / hand-fp32"],
                                                                      ratios["specc-bf16-cl / hand-bf16-cl"]) >= 0.98,
            "bf16 + channels_last >= 2x fp32 eager": ratios["specc-bf16-cl / hand-fp32"] >= 2.0,
        },
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run of the code)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (torch.compile compiles here)")
    parser.add_argument("--no-compile", action="store_true", help="leave out specc-bf16-compile")
    parser.add_argument("--json", metavar="FILE", help="write the figures here too")
    args = parser.parse_args()
    figures = measure(args)
    print(
        f"ALL-CNN-C training on {figures['device']}, batch {args.batch}; torch {figures['torch']};"
        f" {args.rounds} interleaved rounds x {args.steps} steps"
    )
    print(f"{'configuration':24} {'median img/s':>12} {'vs hand-fp32':>13}")
    base = figures["images_per_s"]["hand-fp32"]
    for name, rate in figures["images_per_s"].items():
        print(f"{name:24} {rate:12.1f} {rate / base:12.2f}x")
    for name, value in figures["ratios"].items():
        print(f"{name:36} {value:.3f}")
    if figures["compile_error"]:
        print(f"specc-bf16-compile left out: {figures['compile_error']}")
    for target, met in figures["targets"].items():
        print(f"target {target}: {'PASS' if met else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
