"""`specc bench`: latency, throughput and memory of a network in torch and onnxruntime, side by side.

From a spec it times torch eager, torch channels_last, torch.compile, onnxruntime on specc's
fp32 ONNX and onnxruntime int8 (`--int8 MODEL` or `--quantize`), with ratios against torch
eager; from a compiled MODEL.onnx it times that model in onnxruntime (and its int8 version
with --quantize). How contenders are checked and timed: `specc.commands.bench_run`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

from specc.commands.common import add_command, add_spec_options, check_kwargs, positive_int, positive_number
from specc.errors import UserError

EXAMPLES = """
specc bench specs/allcnn_c.yaml --batch 1,64 --threads 2 --quantize
specc bench specs/allcnn_c.yaml --weights runs/allcnn_c/best.pt --int8 build/allcnn_c.int8.onnx --plot bench.png
specc bench build/allcnn_c.int8.onnx --batch 1,16,64 --threads 1 --json
"""
MAX_BATCH = 4096
SPEC_SUFFIXES = (".yaml", ".yml")


def register(sub) -> None:
    p = add_command(
        sub,
        "bench",
        "latency, throughput and memory of a network: torch eager/channels_last/compile, onnxruntime fp32/int8",
        EXAMPLES,
        description=(
            "Time a network the ways it can run on this machine. From a SPEC: torch eager, torch channels_last,"
            " torch.compile, onnxruntime on specc's ONNX (fp32) and int8 (--int8 or --quantize), one set of weights,"
            " outputs checked to agree before timing. From MODEL.onnx (compiled by specc): that model in"
            " onnxruntime. One warm-up, then interleaved rounds; median and p90 latency, throughput, peak memory."
        ),
    )
    add_spec_options(p)
    p.add_argument("--weights", metavar="CKPT", help="a specc checkpoint for the spec (default: seed-0 weights)")
    p.add_argument("--batch", type=batch_list, default=(1, 64), metavar="N,...", help="batch sizes (default 1,64)")
    p.add_argument(
        "--threads", type=positive_int, metavar="N", help="threads of torch and onnxruntime (default: cores)"
    )
    p.add_argument("--rounds", type=positive_int, default=5, metavar="N", help="interleaved rounds (default 5)")
    p.add_argument(
        "--seconds",
        type=positive_number,
        default=0.2,
        metavar="S",
        help="time per contender, batch and round (default 0.2)",
    )
    p.add_argument("--int8", metavar="MODEL.onnx", help="an int8 model of the spec (`specc quantize`) to time too")
    p.add_argument(
        "--quantize", action="store_true", help="quantize specc's ONNX (static int8, random calibration: speed only)"
    )
    p.add_argument(
        "--no-compile", dest="compile", action="store_false", help="leave out torch.compile (slow to compile)"
    )
    p.add_argument(
        "--provider", choices=("cpu", "cuda", "tensorrt"), default="cpu", help="onnxruntime's provider (default cpu)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="OUT.png", help="also write a bar chart of throughput")
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
        import numpy as np

        from specc.commands import bench_run
        from specc_onnx.runtime import cpu_count, resolve_providers
    except ImportError as exc:
        raise UserError(f"bench needs onnx and onnxruntime ({exc}) — pip install 'specc[onnx]'") from None
    if args.plot and not args.plot.endswith(".png"):
        raise UserError(f"--plot {args.plot}: expected a .png file name")
    threads = args.threads or cpu_count()
    providers = resolve_providers(args.provider)
    from_spec = args.spec in (None, "-") or args.spec.endswith(SPEC_SUFFIXES)
    if from_spec:
        name, shape, setups, int8 = _spec_setups(args, threads, providers)
    else:
        name, shape, setups, int8 = _model_setups(args, threads, providers)
    rng = np.random.default_rng(0)
    feeds = {b: rng.standard_normal((b, *shape)).astype(np.float32) for b in args.batch}
    contenders = bench_run.prepare(setups, feeds[max(args.batch)], int8)
    bench_run.measure(contenders, feeds, args.rounds, args.seconds)
    report = _report(name, contenders, args, threads, providers[0])
    if args.plot:
        _plot(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


def _spec_setups(args, threads: int, providers: list[str]):
    from specc.api import check
    from specc.commands.bench_run import ort_setup, torch_setups
    from specc.commands.common import spec_source

    if "torch" not in sys.modules:
        # torch's OpenMP threads then sleep between ops, as onnxruntime's do in specc (no
        # spinning): on a busy machine a spinning thread steals the time slice of the one it
        # waits for, and torch would be timed at its worst (docs/deploy.md). Set
        # OMP_WAIT_POLICY yourself to time torch otherwise.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch

        import specc_torch
        from specc_onnx import emit, to_bytes
        from specc_torch.weights import load_weights, state_dict_numpy
    except ImportError as exc:
        raise UserError(f"bench from a spec needs torch and onnx ({exc}) — pip install 'specc[torch,onnx]'") from None
    graph = check(spec_source(args.spec), args.overrides, **check_kwargs(args)).graph
    if graph.classes is None:
        raise UserError(f"{args.spec}: bench compares class scores, but spec '{graph.name}' has no classes")
    torch.set_num_threads(threads)
    module = specc_torch.build(graph, seed=0).eval()
    if args.weights:
        module.load_state_dict(load_weights(args.weights, graph))
    fp32 = to_bytes(emit(graph, state_dict_numpy(module)))
    setups = torch_setups(module, args.compile)
    setups["onnxruntime fp32"] = ort_setup(fp32, threads, providers)
    int8 = _int8_setups(args, fp32, graph.input_shape, threads, providers, graph.classes)
    setups |= int8
    return graph.name, graph.input_shape, setups, set(int8)


def _model_setups(args, threads: int, providers: list[str]):
    from specc.commands.bench_run import ort_setup
    from specc_onnx.runtime import load_model, read_metadata

    if args.weights or not args.compile or args.int8:
        flag = "--weights" if args.weights else "--int8" if args.int8 else "--no-compile"
        raise UserError(f"{flag}: applies to a SPEC; {args.spec} is a compiled model (bench times it in onnxruntime)")
    model = load_model(args.spec)
    meta = read_metadata(model, args.spec)  # one line for a non-specc model
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if dim.HasField("dim_value") and set(args.batch) != {dim.dim_value}:
        raise UserError(f"--batch: {args.spec} takes a fixed batch of {dim.dim_value} — pass --batch {dim.dim_value}")
    if model.graph.input[0].type.tensor_type.elem_type != 1:
        raise UserError(
            f"{args.spec}: takes float16 input (--io fp16); bench feeds float32 — compile it without --io fp16"
        )
    kind = "int8" if "quantization" in meta.extra else "fp16" if "precision" in meta.extra else "fp32"
    setups = {f"onnxruntime {kind}": ort_setup(args.spec, threads, providers)}  # the path: errors name the file
    int8: dict = {}
    if args.quantize:
        if kind != "fp32":
            raise UserError(f"--quantize: {args.spec} is already {kind}")
        int8 = _int8_setups(args, model.SerializeToString(), meta.input_shape, threads, providers)
    return meta.name, meta.input_shape, setups | int8, set(int8)


def _int8_setups(args, fp32: bytes, shape, threads: int, providers: list[str], classes: int | None = None) -> dict:
    """The int8 contender: --int8 MODEL, or --quantize (static QDQ calibrated on 64 random
    inputs: the speed is right, the accuracy is not judged — `specc quantize` does that)."""
    from specc.commands.bench_run import ort_setup

    if args.int8:
        from specc_onnx.runtime import read_metadata

        meta = read_metadata(args.int8)
        if "quantization" not in meta.extra:
            raise UserError(f"--int8 {args.int8}: not a model from `specc quantize` (no specc.quantization)")
        # its scores are compared with the spec's: the same input and classes, or a broadcast error
        if (tuple(meta.input_shape), meta.classes) != (tuple(shape), classes):
            theirs, ours = "x".join(map(str, meta.input_shape)), "x".join(map(str, shape))
            raise UserError(
                f"--int8 {args.int8}: a model of '{meta.name}' ({theirs} -> {meta.classes} classes), not of"
                f" {args.spec} ({ours} -> {classes} classes)"
            )
        return {"onnxruntime int8": ort_setup(args.int8, threads, providers)}
    if not args.quantize:
        return {}
    import numpy as np
    import onnx

    from specc_onnx.quantize import QuantizeSettings, quantize_model

    calibration = np.random.default_rng(1).standard_normal((64, *shape)).astype(np.float32)
    int8 = quantize_model(onnx.load_model_from_string(fp32), QuantizeSettings(calibration_images=64), calibration)
    return {"onnxruntime int8": ort_setup(int8, threads, providers)}


def _report(name: str, contenders, args, threads: int, provider: str) -> dict:
    from specc.commands.bench_run import summary

    base = next((c for c in contenders if c.run is not None), None)
    rows = []
    for c in contenders:
        row: dict = {"contender": c.name, "note": c.note, "peak_mib": c.peak_mb, "results": []}
        for b in args.batch if c.run is not None else ():
            figures = summary(c, b)
            if base is not None:
                figures["speedup"] = summary(base, b)["median_ms"] / figures["median_ms"]
            row["results"].append({"batch": b, **figures})
        rows.append(row)
    return {
        "model": name,
        "baseline": base.name if base else None,
        "threads": threads,
        "rounds": args.rounds,
        "provider": provider,
        "contenders": rows,
    }


def _print_table(report: dict) -> None:
    threads = f"{report['threads']} thread{'s' if report['threads'] != 1 else ''}"
    print(
        f"{report['model']}: {threads}, onnxruntime on {report['provider']}, {report['rounds']} interleaved rounds;"
        f" ratios against {report['baseline']}"
    )
    print(f"{'contender':<22}{'batch':>6}{'median ms':>11}{'p90 ms':>9}{'images/s':>11}{'speedup':>9}{'peak MiB':>10}")
    for row in report["contenders"]:
        peak = "n/a" if row["peak_mib"] is None else f"{row['peak_mib']:.1f}"
        for r in row["results"]:
            print(
                f"{row['contender']:<22}{r['batch']:>6}{r['median_ms']:>11.3f}{r['p90_ms']:>9.3f}"
                f"{r['images_per_s']:>11,.0f}{r['speedup']:>8.2f}x{peak:>10}"
            )
    for row in report["contenders"]:
        if row["note"]:
            print(f"  {row['contender']}: {row['note']}")


def _plot(report: dict, out: str) -> None:
    """A bar chart of throughput per contender and batch size, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from specc.fileio import write_bytes

    rows = [r for r in report["contenders"] if r["results"]]
    batches = [r["batch"] for r in rows[0]["results"]] if rows else []
    fig, axes = plt.subplots(1, max(1, len(batches)), figsize=(4.5 * max(1, len(batches)), 3.5), squeeze=False)
    for ax, (i, b) in zip(axes[0], enumerate(batches)):
        values = [r["results"][i]["images_per_s"] for r in rows]
        ax.barh([r["contender"] for r in rows], values, color="#4c72b0")
        for y, (v, r) in enumerate(zip(values, rows)):
            ax.text(v, y, f" {r['results'][i]['speedup']:.2f}x", va="center", fontsize=8)
        ax.set_xlim(0, 1.2 * max(values))  # room for the ratio labels
        ax.set_title(f"batch {b}")
        ax.set_xlabel("images/s")
        ax.invert_yaxis()
    fig.suptitle(f"{report['model']}, {report['threads']} threads (ratios vs {report['baseline']})")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes(Path(out), buffer.getvalue())
    print(f"wrote {out}", file=sys.stderr)
