"""`specc quantize`: int8 a compiled model with onnxruntime, and keep it only if it agrees.

Calibration images are drawn with a fixed seed from the dataset's training split; the
int8 model is then compared with the fp32 one on the test split (top-1 agreement, accuracy
of both, largest logit difference, size, speed) and written — atomically, with the fp32
model's specc metadata plus `specc.quantization` — only when the agreement reaches --gate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from specc.commands.common import add_command, positive_int, refuse_stdout
from specc.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from specc_onnx.metadata import SpeccMetadata

EXAMPLES = """
specc quantize build/allcnn_c_fmnist.onnx --data fashion-mnist
specc quantize build/allcnn_c.onnx --data cifar10 --data-dir DIR --method entropy --gate 0.995 -o dist/allcnn_c.int8.onnx
specc quantize build/allcnn_c.onnx --data cifar10 --mode dynamic --eval 1000 --json
"""
CALIBRATION_SEED = 0
SENSITIVITY_LAYERS = 12  # at most this many conv layers are tried one at a time after a failed gate


def register(sub) -> None:
    p = add_command(
        sub,
        "quantize",
        "int8-quantize a compiled ONNX model (onnxruntime), kept only if it agrees with fp32",
        EXAMPLES,
        description=(
            "Quantize a model from `specc compile` to int8 (static QDQ calibrated on training images,"
            " or dynamic), compare it with the fp32 model on the test split and write it only when"
            " the top-1 agreement reaches --gate (exit 2 otherwise, nothing written)."
        ),
    )
    p.add_argument("model", metavar="MODEL.onnx", help="an ONNX model compiled by specc")
    p.add_argument("--data", required=True, metavar="DATASET", help="calibration and test data, e.g. fashion-mnist")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset's files are")
    p.add_argument("-o", "--output", metavar="OUT.onnx", help="where to write (default MODEL.int8.onnx)")
    p.add_argument(
        "--calibration", type=positive_int, default=512, metavar="N", help="calibration images (default 512)"
    )
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax", help="calibration")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--per-channel", dest="per_channel", action="store_true", default=True, help="(default)")
    group.add_argument("--per-tensor", dest="per_channel", action="store_false", help="one scale per weight tensor")
    p.add_argument("--gate", type=gate_fraction, default=0.99, metavar="F", help="least top-1 agreement, in (0, 1]")
    p.add_argument("--exclude", type=layer_list, default=(), metavar="LAYER,...", help="layers to keep in fp32")
    p.add_argument("--eval", type=positive_int, metavar="N", help="compare on the first N test images (default all)")
    p.add_argument("--mode", choices=("static", "dynamic"), default="static", help="(default static)")
    p.add_argument("--no-bench", action="store_true", help="skip the latency/throughput measurement")
    p.add_argument("--force", action="store_true", help="overwrite OUT.onnx")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def gate_fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not in (0, 1]")
    return value


def layer_list(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated layer names."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty layer name")
    return names


def run(args) -> int:
    refuse_stdout("-o", args.output, "an ONNX model")
    try:
        from specc_onnx.quantize import QuantizeSettings, layer_nodes, quantize_model
        from specc_onnx.runtime import load_model, make_session, read_metadata
    except ImportError as exc:
        raise UserError(f"quantize needs onnx and onnxruntime ({exc}) — pip install 'specc[onnx]'") from None

    fp32 = load_model(args.model)
    meta = read_metadata(fp32, args.model)  # one line for a non-specc model
    out = Path(args.output) if args.output else Path(args.model).with_suffix(".int8.onnx")
    _check_model(args.model, fp32, meta)
    try:  # one line for a model onnxruntime refuses (the quantizer's own error is a traceback)
        make_session(fp32, threads=1)
    except UserError as exc:
        raise UserError(f"{args.model}{str(exc).removeprefix('<model>')}") from None
    if out.exists() and not args.force:
        raise UserError(f"-o {out}: already exists — pass --force to overwrite")
    if out.is_dir():
        raise UserError(f"-o {out}: is a folder, expected an .onnx file")
    layer_nodes(fp32, args.exclude)  # refuse an unknown --exclude before reading any data
    train, test, labels = _load_data(args, meta)
    settings = QuantizeSettings(
        mode=args.mode,
        method=args.method,
        per_channel=args.per_channel,
        exclude=args.exclude,
        calibration_images=0 if train is None else len(train),
        calibration_seed=CALIBRATION_SEED,
        calibration_source=f"{args.data} train",
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress: stdout is ours
        int8 = quantize_model(fp32, settings, train)
    report = _measure(args, fp32, int8, test, labels, meta)
    report["settings"] = settings.to_dict()
    passed = report["agreement"] >= args.gate
    if passed:
        report["int8_bytes"] = _finish(int8, report)
        from specc.fileio import write_bytes

        write_bytes(out, int8.SerializeToString())
        report["output"] = str(out)
    elif args.mode == "static":
        report["sensitivity"] = _sensitivity(fp32, settings, train, test, report["fp32_scores"])
    report.pop("fp32_scores")
    print(json.dumps(report, indent=2) if args.json else _text(report, args.gate, passed))
    if not passed:
        print(
            f"error: {args.model}: int8 top-1 agreement {report['agreement']:.4f} is below --gate {args.gate}"
            " — nothing written",
            file=sys.stderr,
        )
        return 2
    return 0


def _check_model(path: str, model: onnx.ModelProto, meta: SpeccMetadata) -> None:
    if meta.classes is None:
        raise UserError(
            f"{path}: quantize compares class scores, but spec '{meta.name}' has no classes"
            " — add 'classes: N' to the spec and compile it again"
        )
    if "quantization" in meta.extra:
        raise UserError(f"{path}: already quantized (specc.quantization in its metadata) — quantize the fp32 model")
    if "explain" in meta.extra:  # its outputs are maps, not the class scores quantize compares
        raise UserError(f"{path}: an explanation model (`specc compile --explain`) — quantize the classifier's model")
    if "precision" in meta.extra:  # fp16 weights (and maybe fp16 input): nothing for int8 to start from
        raise UserError(f"{path}: an fp16 model (--precision fp16) — quantize the fp32 model (compile without it)")
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if dim.HasField("dim_value"):
        raise UserError(
            f"{path}: the model's input has a fixed batch of {dim.dim_value} — compile it with --batch dynamic"
        )


def _load_data(args, meta: SpeccMetadata) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(calibration images or None, test images, test labels), preprocessed as `meta` says."""
    import numpy as np

    from specc.commands.predict import preprocess
    from specc.training.data import dataset_info, load_dataset

    c, h, w = meta.input_shape
    options = {"channels": c, "classes": meta.classes or 0} if args.data == "synthetic" else {}
    channels, classes, size = dataset_info(args.data, args.data_dir, **options)
    if channels != c or classes != meta.classes or (size is not None and size != (h, w)):
        images = f"{channels}x{size[0]}x{size[1]} images" if size else f"{channels}-channel images"
        raise UserError(
            f"--data {args.data}: gives {images} in {classes} classes but model '{meta.name}' expects"
            f" {c}x{h}x{w} and {meta.classes} classes"
        )
    train = None
    if args.mode == "static":
        ds = load_dataset(args.data, args.data_dir, "train", image_size=(h, w), **options)
        rng = np.random.default_rng(CALIBRATION_SEED)
        pick = np.sort(rng.choice(len(ds), size=min(args.calibration, len(ds)), replace=False))
        train = preprocess(ds.images[pick].astype(np.float32), meta.preprocessing)
    test = load_dataset(args.data, args.data_dir, "test", image_size=(h, w), **options)
    n = min(args.eval or len(test), len(test))
    return train, preprocess(test.images[:n].astype(np.float32), meta.preprocessing), test.labels[:n]


def _measure(args, fp32, int8, test, labels, meta: SpeccMetadata) -> dict:
    from specc_onnx.quantize import benchmark, class_scores, compare
    from specc_onnx.runtime import make_session

    fp32_scores = class_scores(make_session(fp32, providers=["CPUExecutionProvider"]), test)
    int8_scores = class_scores(make_session(int8, providers=["CPUExecutionProvider"]), test)
    report = {"model": meta.name, "dataset": args.data, **compare(fp32_scores, int8_scores, labels).to_dict()}
    report["fp32_bytes"] = Path(args.model).stat().st_size
    if not args.no_bench:
        speed = benchmark({"fp32": fp32, "int8": int8}, meta.input_shape, (1, 64))
        report["speed"] = {
            "threads": _threads(),
            "batch1_latency_ms": {k: v[1]["latency_ms"] for k, v in speed.items()},
            "batch64_images_per_s": {k: v[64]["images_per_s"] for k, v in speed.items()},
        }
    report["fp32_scores"] = fp32_scores
    return report


def _threads() -> int:
    from specc_onnx.runtime import cpu_count

    return cpu_count()


def _finish(int8: onnx.ModelProto, report: dict) -> int:
    """Record the settings and figures in the model's metadata; returns the final file size
    (which the metadata itself holds, so settle it in a few passes)."""
    from specc_onnx.quantize import set_metadata

    keys = ("settings", "images", "agreement", "max_logit_diff", "accuracy_fp32", "accuracy_int8", "fp32_bytes")
    record = {k: report[k] for k in keys} | ({"speed": report["speed"]} if "speed" in report else {})
    size = int8.ByteSize()
    for _ in range(4):
        set_metadata(int8, "quantization", {**record["settings"], "figures": record | {"int8_bytes": size}})
        if int8.ByteSize() == size:
            break
        size = int8.ByteSize()
    return size


def _sensitivity(fp32, settings, train, test, fp32_scores) -> list[dict]:
    """Agreement with each conv layer left in fp32, one at a time; most sensitive first."""
    from dataclasses import replace

    from specc_onnx.quantize import class_scores, compare, conv_layers, quantize_model
    from specc_onnx.runtime import make_session

    rows = []
    for layer in [name for name in conv_layers(fp32) if name not in settings.exclude][:SENSITIVITY_LAYERS]:
        with contextlib.redirect_stdout(io.StringIO()):
            model = quantize_model(fp32, replace(settings, exclude=(*settings.exclude, layer)), train)
        scores = class_scores(make_session(model, providers=["CPUExecutionProvider"]), test)
        rows.append({"exclude": layer, "agreement": compare(fp32_scores, scores, None).agreement})
    return sorted(rows, key=lambda row: -row["agreement"])


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _text(report: dict, gate: float, passed: bool) -> str:
    lines = [
        f"{report['model']}: int8 ({report['settings']['mode']}) vs fp32 on {report['images']} {report['dataset']} test images",
        f"  top-1 agreement  {_pct(report['agreement'])}  (gate {_pct(gate)}: {'passed' if passed else 'FAILED'})",
        f"  accuracy         fp32 {_pct(report['accuracy_fp32'])}, int8 {_pct(report['accuracy_int8'])}",
        f"  max |logit diff| {report['max_logit_diff']:.4f}",
    ]
    if "int8_bytes" in report:
        ratio = report["fp32_bytes"] / report["int8_bytes"]
        lines.append(
            f"  size             fp32 {report['fp32_bytes']:,} B, int8 {report['int8_bytes']:,} B ({ratio:.2f}x smaller)"
        )
    if "speed" in report:
        s = report["speed"]
        lat, thr = s["batch1_latency_ms"], s["batch64_images_per_s"]
        lines.append(
            f"  batch-1 latency  fp32 {lat['fp32']:.3f} ms, int8 {lat['int8']:.3f} ms ({lat['fp32'] / lat['int8']:.2f}x)"
            f"  [{s['threads']} threads, medians of interleaved rounds]"
        )
        lines.append(
            f"  batch-64         fp32 {thr['fp32']:,.0f} img/s, int8 {thr['int8']:,.0f} img/s ({thr['int8'] / thr['fp32']:.2f}x)"
        )
    if "output" in report:
        lines.append(f"wrote {report['output']}")
    if report.get("sensitivity"):
        lines.append("most sensitive layers first (agreement with only that layer left in fp32):")
    for row in report.get("sensitivity", []):
        lines.append(f"  with {row['exclude']} in fp32: agreement {_pct(row['agreement'])}")
    return "\n".join(lines)
