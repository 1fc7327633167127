"""The streaming data path on this machine: images/s of the streaming loader alone against the
training step it feeds, and the peak memory of a streamed pass over a folder of JPEGs.

    python benchmarks/bench_stream.py                        # 20,000 227x227 JPEGs in /tmp, a few minutes
    python benchmarks/bench_stream.py --images 2000 --workers 2 --rounds 2

Setup: a folder of --images generated 227x227 JPEGs in 10 class folders (ImageNet-style,
`train/<class>/`), written once under /tmp and reused.

1. Peak memory (a fresh process): `--data-mode stream`'s work over the whole folder: list it,
   fit "normalize" (every image decoded by the workers), then one epoch of `StreamLoader`
   (decode, preprocess, flip, translate 16) — peak RSS of the process and of its largest
   worker, against the folder's decoded size (N x 3 x 227 x 227 bytes).
2. Speed, in interleaved rounds (a change of load on a shared machine hits each alike):
   loader    `StreamLoader` batches alone (--workers processes decoding), images/s
   step      the ImageNet ALL-CNN (Table 6) training step on one fixed batch (fp32,
             channels_last, SGD): what the loader must keep up with
   fed step  the same step fed by the streaming loader: its ratio to `step` is the cost of
             streaming (decoding competes with the step for the cores)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "backends")]

SIZE = 227
CLASSES = 10


# -- setup: the folder -------------------------------------------------------------------------
def _write_images(job: tuple[Path, int, int]) -> None:
    from PIL import Image

    root, start, stop = job
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        # Smooth colour fields plus a little noise: JPEGs of realistic size (~10 kB), not
        # white noise (which compresses to ~100 kB and makes decoding unrealistically slow).
        low = rng.integers(0, 256, (8, 8, 3)).astype(np.float32)
        image = np.kron(low, np.ones((29, 29, 1), np.float32))[:SIZE, :SIZE]
        image += rng.normal(0, 12, image.shape).astype(np.float32)
        folder = root / "train" / f"class{i % CLASSES}"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=85)


def make_folder(count: int) -> Path:
    """`count` JPEGs under /tmp/specc-bench-stream-<count>/train/classK/ (made once), plus a
    test split of one image per class."""
    root = Path(f"/tmp/specc-bench-stream-{count}")
    done = root / ".complete"
    if done.exists():
        return root
    for split in ("train", "val"):
        for c in range(CLASSES):
            (root / split / f"class{c}").mkdir(parents=True, exist_ok=True)
    chunks = [(root, s, min(s + 500, count)) for s in range(0, count, 500)]
    with multiprocessing.get_context("fork").Pool() as pool:
        pool.map(_write_images, chunks)
    for c in range(CLASSES):
        source = next((root / "train" / f"class{c}").iterdir())
        (root / "val" / f"class{c}" / source.name).write_bytes(source.read_bytes())
    done.touch()
    return root


# -- 1. peak memory, in a fresh process ------------------------------------------------------------
def memory_pass(root: str, workers: int, batch: int) -> dict:
    """Run in a child process: a streamed pass as training does it; peak RSS in bytes."""
    import torch

    from specc.training.data import AugmentConfig, torch_preprocess
    from specc.training.data.stream import open_stream
    from specc.training.data.streamloader import StreamLoader, fit_streamed

    torch.set_num_threads(1)
    started = time.perf_counter()
    dataset = open_stream("folder", root, "train", (SIZE, SIZE))
    preprocessing = fit_streamed("normalize", dataset, workers)
    augment = AugmentConfig(flip=True, translate=16, padding="reflect")
    loader = StreamLoader(
        dataset,
        batch,
        shuffle=True,
        drop_last=False,
        preprocess=torch_preprocess(preprocessing, "cpu"),
        augment=augment,
        workers=workers,
    )
    seen = sum(len(y) for _, y in loader.batches())
    del loader  # its workers exit, so RUSAGE_CHILDREN counts them
    kib = 1024  # ru_maxrss is in KiB on Linux
    return {
        "images": seen,
        "seconds": time.perf_counter() - started,
        "peak_rss_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib,
        "peak_rss_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib,
    }


# -- 2. speed ------------------------------------------------------------------------------------
def speed(root: Path, args) -> dict[str, list[float]]:
    """images/s of each configuration per round, interleaved."""
    import torch
    import torch.nn.functional as F

    import specc_torch
    from specc.api import load
    from specc.training.data import AugmentConfig, torch_preprocess
    from specc.training.data.stream import open_stream
    from specc.training.data.streamloader import StreamLoader, fit_streamed
    from specc.training.setup import keep_large_buffers

    keep_large_buffers()  # as `specc train` does on the CPU
    dataset = open_stream("folder", str(root), "train", (SIZE, SIZE))
    preprocess = torch_preprocess(fit_streamed("none", dataset), "cpu")
    augment = AugmentConfig(flip=True, translate=16, padding="reflect")
    loader = StreamLoader(
        dataset, args.batch, shuffle=True, drop_last=True, preprocess=preprocess, augment=augment, workers=args.workers
    )
    graph = load(str(ROOT / "specs" / "allcnn_imagenet.yaml"))
    model = specc_torch.build(graph, seed=0, output="logits").to(memory_format=torch.channels_last)  # pyright: ignore
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    fixed = next(iter(loader.batches()))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y % 1000)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)

    batches, epoch = iter(()), 0

    def next_batch():
        nonlocal batches, epoch
        try:
            return next(batches)
        except StopIteration:
            epoch += 1
            loader.set_epoch(epoch)
            batches = loader.batches()
            return next(batches)

    def timed(configuration: str, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            if configuration == "loader":
                next_batch()
            elif configuration == "step":
                step(*fixed)
            else:
                step(*next_batch())
        return count * args.batch / (time.perf_counter() - started)

    step(*fixed)  # warm-up: allocator, oneDNN kernels
    next_batch()
    rates: dict[str, list[float]] = {"loader": [], "step": [], "fed step": []}
    for _ in range(args.rounds):
        for name in rates:
            rates[name].append(timed(name, args.loader_batches if name == "loader" else args.steps))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="images per batch (speed); 128 for the memory pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="training steps per configuration per round")
    parser.add_argument("--loader-batches", type=int, default=20, help="loader batches per round")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--memory-pass", metavar="ROOT", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.memory_pass:
        print(json.dumps(memory_pass(args.memory_pass, args.workers, 128)))
        return

    import torch

    started = time.perf_counter()
    root = make_folder(args.images)
    print(f"folder: {args.images} JPEGs {SIZE}x{SIZE} in {root} ({time.perf_counter() - started:.0f} s to set up)")
    child = subprocess.run(
        [sys.executable, __file__, "--memory-pass", str(root), "--workers", str(args.workers)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    memory = json.loads(child.stdout.splitlines()[-1])
    decoded = args.images * 3 * SIZE * SIZE
    rates = speed(root, args)
    median = {name: statistics.median(r) for name, r in rates.items()}
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} threads, {args.workers} decoding workers, batch {args.batch};"
        f" {args.rounds} interleaved rounds"
    )
    gib = 1 << 30
    print(
        f"peak memory of a streamed epoch (fit + 1 pass, {memory['images']} images, {memory['seconds']:.0f} s):"
        f" main {memory['peak_rss_main'] / gib:.2f} GiB, largest worker {memory['peak_rss_worker'] / gib:.2f} GiB;"
        f" decoded size {decoded / gib:.2f} GiB ({decoded / max(memory['peak_rss_main'], 1):.1f}x the main process)"
    )
    print(f"{'configuration':44} {'median img/s':>12} {'ratio to step':>14}")
    labels = {
        "loader": "streaming loader alone (decode + augment)",
        "step": "ALL-CNN ImageNet training step, fixed batch",
        "fed step": "the same step fed by the streaming loader",
    }
    for name, label in labels.items():
        print(f"{label:44} {median[name]:12.1f} {median[name] / median['step']:13.2f}x")
    figures = {"images": args.images, "workers": args.workers, "batch": args.batch, "memory": memory}
    figures |= {"decoded_bytes": decoded, "images_per_s": median, "rounds": rates}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
