"""onnxruntime on specc's ONNX (fp32 and int8) vs PyTorch eager vs onnxruntime on `torch.onnx.export`.

    python benchmarks/bench_onnx_runtime.py                  # ALL-CNN-C, 2 threads, ~2-3 min
    python benchmarks/bench_onnx_runtime.py --spec specs/resnet_tiny.yaml --threads 1

Targets (issue 13, ALL-CNN-C, 2 threads, batch 1 and batch 64): onnxruntime fp32 on specc's
ONNX >= 1.5x torch eager, int8 (static QDQ, calibrated here on random inputs: speed only)
>= 4x torch eager. Both runtimes' threads sleep between ops (onnxruntime: specc's session
options; torch: OMP_WAIT_POLICY=PASSIVE, set below before torch loads unless you set it),
so that on a shared machine neither is timed spinning against the other.

One set of weights (specc.build, seed 0) feeds every contender; outputs are checked
to agree before anything is timed. Batch-1 latency is the median over many runs; batch-64
throughput is images over the median time of one batch. The contenders are measured in
interleaved rounds (A B C D, A B C D, ...) so that a neighbour's load on a shared machine
hits all of them alike; the ratios printed are from this one run.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

from specc import build  # noqa: E402
from specc_onnx import emit, to_bytes  # noqa: E402
from specc_onnx.quantize import QuantizeSettings, quantize_model  # noqa: E402
from specc_onnx.runtime import cpu_count, make_session  # noqa: E402
from specc_torch.weights import state_dict_numpy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class _Plain(torch.nn.Module):
    """forward(x) only: the TorchScript exporter passes every forward parameter positionally."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def exported_onnx(module: torch.nn.Module, shape: tuple[int, ...], opset: int) -> bytes:
    """The same module through torch.onnx.export (the TorchScript exporter: the dynamo one
    needs onnxscript, which is not a specc dependency)."""
    buffer = io.BytesIO()
    torch.onnx.export(
        _Plain(module).eval(),  # export restores the mode it found: train would leak into `module`
        (torch.randn(1, *shape),),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return buffer.getvalue()


def int8_model(model_bytes: bytes, shape: tuple[int, ...]) -> onnx.ModelProto:
    """specc quantize's static QDQ int8 (per channel, minmax), calibrated on 64 random inputs."""
    calibration = np.random.default_rng(1).standard_normal((64, *shape)).astype(np.float32)
    settings = QuantizeSettings(calibration_images=64)
    return quantize_model(onnx.load_model_from_string(model_bytes), settings, calibration)


def contenders(module, model_bytes: bytes, exported: bytes, threads: int) -> dict:
    """name -> run(x: np.ndarray) returning a numpy array."""
    specc_session = make_session(model_bytes, providers=["CPUExecutionProvider"], threads=threads)
    export_session = make_session(exported, providers=["CPUExecutionProvider"], threads=threads)
    int8 = int8_model(model_bytes, module.graph.input_shape)
    int8_session = make_session(int8, providers=["CPUExecutionProvider"], threads=threads)
    channels_last = build(module.graph, seed=None).eval()
    channels_last.load_state_dict(module.state_dict())
    channels_last = channels_last.to(memory_format=torch.channels_last)

    def eager(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    def eager_cl(x):
        with torch.inference_mode():
            return channels_last(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

    return {
        "ORT specc": lambda x: specc_session.run(None, {"input": x})[0],
        "ORT specc int8": lambda x: int8_session.run(None, {"input": x})[0],
        "ORT torch.onnx.export": lambda x: export_session.run(None, {"input": x})[0],
        "torch eager": eager,
        "torch eager channels_last": eager_cl,
    }


def timed(run, x: np.ndarray, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return times


def measure(runs: dict, x: np.ndarray, rounds: int, per_round: int) -> dict[str, float]:
    """Median seconds per call of each contender, interleaved round by round."""
    for run in runs.values():  # warm-up: allocations, layout caches, thread pools
        timed(run, x, 3)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name] += timed(run, x, per_round)
    return {name: statistics.median(times) for name, times in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "allcnn_c.yaml"))
    parser.add_argument("--threads", type=int, default=cpu_count(), help="threads for every contender (default: cores)")
    parser.add_argument("--batch", type=int, default=64, help="throughput batch size (default 64)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    module = build(args.spec, seed=0).eval()
    graph = module.graph
    model_bytes = to_bytes(emit(graph, state_dict_numpy(module), opset=args.opset))
    exported = exported_onnx(module, graph.input_shape, args.opset)
    runs = contenders(module, model_bytes, exported, args.threads)

    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, *graph.input_shape), dtype=np.float32)
    xb = rng.standard_normal((args.batch, *graph.input_shape), dtype=np.float32)
    reference = runs["torch eager"](xb)
    for name, run in runs.items():
        if name == "ORT specc int8":  # int8 is not meant to match to 1e-4: its top-1 agreement is shown
            agreement = float((run(xb).argmax(axis=1) == reference.argmax(axis=1)).mean())
            continue
        error = float(np.abs(run(xb) - reference).max())
        assert error < 1e-4, f"{name} disagrees with torch eager by {error:.2e}"

    latency = measure(runs, x1, args.rounds, 30)
    throughput = {k: args.batch / v for k, v in measure(runs, xb, args.rounds, 2).items()}

    import onnxruntime

    load = os.getloadavg()[0]
    if load > 0.5:  # our own runs count too, but a busy machine distorts eager's thread pool most
        print(f"note: 1-minute load average {load:.1f} at the end — other jobs ran alongside; figures are noisy")
    print(
        f"{graph.name}: {args.threads} thread(s), torch {torch.__version__}, onnxruntime {onnxruntime.__version__},"
        f" opset {args.opset}, fp32 outputs agree within 1e-4, int8 top-1 agreement {agreement:.1%}"
        f" (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})"
    )
    print(f"{'contender':<28}{'batch-1 latency':>18}{f'batch-{args.batch} throughput':>26}")
    for name in runs:
        print(f"{name:<28}{latency[name] * 1e3:>15.2f} ms{throughput[name]:>20.0f} img/s")
    base = "ORT specc"
    print("ratios (>1: ORT on specc's ONNX is faster):")
    for name in runs:
        if name != base:
            print(
                f"  vs {name:<26} batch-1 {latency[name] / latency[base]:5.2f}x"
                f"   batch-{args.batch} {throughput[base] / throughput[name]:5.2f}x"
            )
    eager = "torch eager"
    print("targets (vs torch eager):")
    for name, target in (("ORT specc", 1.5), ("ORT specc int8", 4.0)):
        ratios = (latency[eager] / latency[name], throughput[name] / throughput[eager])
        verdict = "met" if min(ratios) >= target else "NOT met"
        print(f"  {name:<16} >= {target}x: batch-1 {ratios[0]:.2f}x, batch-{args.batch} {ratios[1]:.2f}x — {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
