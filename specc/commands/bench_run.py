"""The contenders of `specc bench` and how they are timed.

A contender is a name and a function from a numpy batch (N, C, H, W) float32 to the class
scores. From a spec: torch eager (the reference every ratio is against), torch eager with
channels_last tensors, torch.compile (inductor), onnxruntime on specc's fp32 ONNX, and
onnxruntime int8 (a quantized model given with --int8, or --quantize). One set of weights
feeds all of them; before anything is timed each output is compared with torch eager's, and
an fp32 contender that disagrees is dropped with the figure (int8 reports its top-1
agreement instead: it is not meant to match to 1e-4).

Timing: three warm-up calls per contender and batch (the fastest sizes a run of calls lasting
`min_seconds`), then `rounds` interleaved rounds — every contender at every batch size per
round — so that load from other processes hits all of them alike. Latency figures are the
median and 90th percentile over every timed call; throughput is batch / median latency.

Peak memory is the growth of the process's peak resident set (Linux VmHWM, reset through
/proc/self/clear_refs) while a contender is set up and runs its first call at the largest
batch: weights, onnxruntime's arena, torch.compile's code, activations. Contenders are set
up one after another in one process, so memory an earlier one freed and a later one reuses
is not counted twice; None where the kernel offers no reset.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from specc.errors import UserError

Run = Callable[[np.ndarray], np.ndarray]
EAGER = "torch eager"
WARMUP = 3
FP32_ATOL = 1e-4  # relative to the largest |score| (at least 1): fp32 reorderings differ by ~1e-6


@dataclass
class Contender:
    name: str
    run: Run | None  # None: skipped
    note: str = ""  # why it was skipped, or how it agrees with eager
    peak_mb: float | None = None
    times: dict[int, list[float]] = field(default_factory=dict)  # batch -> seconds per call


def peak_rss_mb(setup: Callable[[], Run], first: np.ndarray) -> tuple[Run, float | None]:
    """Run `setup()` and the first call of what it returns; the growth of the peak RSS, MiB."""
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    try:
        clear.write_text("5")  # resets VmHWM to the current RSS
        base = _vm(status, "VmRSS")
    except OSError:
        run = setup()
        run(first)
        return run, None
    run = setup()
    run(first)
    return run, max(0.0, (_vm(status, "VmHWM") - base) / 1024)


def _vm(status: Path, key: str) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB
    raise OSError(f"no {key} in {status}")


def torch_setups(module, compile: bool) -> dict[str, Callable[[], Run] | str]:
    """name -> setup() of a torch contender, or the reason it is skipped."""
    import torch

    def eager() -> Run:
        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()

        return run

    def channels_last() -> Run:
        import copy

        cl = copy.deepcopy(module).to(memory_format=torch.channels_last)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return cl(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

        return run

    def compiled() -> Run:
        fn = torch.compile(module)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return fn(torch.from_numpy(x)).numpy()

        return run

    setups: dict[str, Callable[[], Run] | str] = {EAGER: eager, "torch channels_last": channels_last}
    setups["torch.compile"] = compiled if compile else "skipped: --no-compile"
    return setups


def ort_setup(model, threads: int, providers: list[str]) -> Callable[[], Run]:
    """setup() of an onnxruntime contender (a path, bytes or ModelProto)."""

    def setup() -> Run:
        from specc_onnx.runtime import make_session

        session = make_session(model, providers=providers, threads=threads)
        name, output = session.get_inputs()[0].name, session.get_outputs()[-1].name
        return lambda x: np.asarray(session.run([output], {name: x})[0])

    return setup


def prepare(setups: dict[str, Callable[[], Run] | str], first: np.ndarray, int8: set[str]) -> list[Contender]:
    """Set up every contender (peak memory measured), then compare its output on `first`
    with the first contender's (the reference)."""
    contenders = []
    for name, setup in setups.items():
        if isinstance(setup, str):
            contenders.append(Contender(name, None, setup))
            continue
        try:
            run, peak = peak_rss_mb(setup, first)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch.compile fails in many ways (no compiler, unsupported op)
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            contenders.append(Contender(name, None, f"skipped: {name} failed ({type(exc).__name__}: {text[:160]})"))
            continue
        contenders.append(Contender(name, run, "", peak))
    reference = contenders[0].run(first) if contenders[0].run else None
    for c in contenders[1:]:
        if c.run is None or reference is None:
            continue
        out = np.asarray(c.run(first), dtype=np.float32)
        diff = float(np.abs(out - reference).max())
        if c.name in int8:
            agree = float((out.argmax(axis=1) == reference.argmax(axis=1)).mean())
            c.note = (
                f"top-1 agreement {agree:.1%} with {contenders[0].name} on {len(first)} random inputs"
                " (not images: `specc quantize` judges agreement on the test set)"
            )
        elif diff > FP32_ATOL * max(1.0, float(np.abs(reference).max())):
            c.run, c.note = None, f"dropped: its output differs from {contenders[0].name}'s by {diff:.2e}"
    return contenders


def measure(contenders: list[Contender], feeds: dict[int, np.ndarray], rounds: int, min_seconds: float) -> None:
    """Fill each contender's `times`: a warm-up, then `rounds` interleaved rounds."""
    live = [c for c in contenders if c.run is not None]
    repeats: dict[tuple[str, int], int] = {}
    for c in live:
        assert c.run is not None
        for b, x in feeds.items():
            warm = []
            for _ in range(WARMUP):  # the first calls allocate, pick kernels, start thread pools
                start = time.perf_counter()
                c.run(x)
                warm.append(time.perf_counter() - start)
            repeats[c.name, b] = max(1, min(200, int(min_seconds / max(min(warm), 1e-6))))
            c.times[b] = []
    for _ in range(rounds):
        for b, x in feeds.items():
            for c in live:
                assert c.run is not None
                for _ in range(repeats[c.name, b]):
                    start = time.perf_counter()
                    c.run(x)
                    c.times[b].append(time.perf_counter() - start)


def summary(c: Contender, batch: int) -> dict[str, float]:
    """median and p90 latency (ms) and throughput of one contender at one batch size."""
    times = sorted(c.times[batch])
    median = statistics.median(times)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    return {"median_ms": 1000 * median, "p90_ms": 1000 * p90, "images_per_s": batch / median}
