"""`specc bench`: batch latency and throughput of a compiled model in onnxruntime (CPU)."""

from __future__ import annotations

import argparse
import json

from specc.commands.common import add_command, positive_int
from specc.errors import UserError

EXAMPLES = """
specc bench build/allcnn_c.onnx
specc bench build/allcnn_c.int8.onnx --batch 1,16,64 --threads 1 --json
"""
MAX_BATCH = 4096


def register(sub) -> None:
    p = add_command(
        sub,
        "bench",
        "latency and throughput of a compiled ONNX model in onnxruntime (CPU)",
        EXAMPLES,
        description=(
            "Time a model from `specc compile` or `specc quantize` in onnxruntime on the CPU: one warm-up,"
            " then interleaved rounds over the batch sizes; medians over the rounds."
        ),
    )
    p.add_argument("model", metavar="MODEL.onnx", help="an ONNX model compiled by specc")
    p.add_argument("--batch", type=batch_list, default=(1, 64), metavar="N,...", help="batch sizes (default 1,64)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="intra-op threads (default: one per core)")
    p.add_argument("--rounds", type=positive_int, default=5, metavar="N", help="timed rounds (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def batch_list(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated batch sizes, 1 to MAX_BATCH."""
    out = []
    for part in text.split(","):
        if not part.strip().isdigit() or not 1 <= int(part) <= MAX_BATCH:
            raise argparse.ArgumentTypeError(f"{text!r}: expected batch sizes 1 to {MAX_BATCH} separated by commas")
        out.append(int(part))
    return tuple(dict.fromkeys(out))


def run(args) -> int:
    try:
        from specc_onnx.quantize import benchmark
        from specc_onnx.runtime import cpu_count, load_model, read_metadata
    except ImportError as exc:
        raise UserError(f"bench needs onnx and onnxruntime ({exc}) — pip install 'specc[onnx]'") from None

    model = load_model(args.model)
    meta = read_metadata(model, args.model)  # one line for a non-specc model
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if dim.HasField("dim_value") and set(args.batch) != {dim.dim_value}:
        raise UserError(f"--batch: {args.model} takes a fixed batch of {dim.dim_value} — pass --batch {dim.dim_value}")
    result = benchmark({"model": model}, meta.input_shape, args.batch, threads=args.threads, rounds=args.rounds)
    rows = [{"batch": b, **figures} for b, figures in result["model"].items()]
    quantized = "quantization" in meta.extra
    report = {
        "model": meta.name,
        "file": args.model,
        "int8": quantized,
        "threads": args.threads or cpu_count(),
        "rounds": args.rounds,
        "results": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    kind = "int8" if quantized else "fp32"
    threads = f"{report['threads']} thread{'s' if report['threads'] != 1 else ''}"
    print(f"{meta.name} ({kind}) in onnxruntime, CPU, {threads}, median of {args.rounds} rounds")
    print(f"{'batch':>7}  {'latency ms':>11}  {'images/s':>10}")
    for row in rows:
        print(f"{row['batch']:>7}  {row['latency_ms']:>11.3f}  {row['images_per_s']:>10,.0f}")
    return 0
