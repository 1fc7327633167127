"""`specc compile`: a spec to a deployable ONNX file and a standalone PyTorch .py file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from specc.api import check
from specc.checkpoint_io import CHECKPOINT_FORMAT, read_checkpoint, read_state_dict
from specc.commands.common import (
    add_command,
    add_spec_options,
    add_weights_map_option,
    check_kwargs,
    check_weights_map,
    refuse_stdout,
    spec_source,
)
from specc.commands.explain_options import add_explain_arguments, explain_onnx_bytes, explain_path
from specc.errors import UserError
from specc.fileio import write_files
from specc.ir import Graph
from specc.outputs import output_mode_problem
from specc.spec import load_graph_text
from specc.summary import human_bytes, render, summary_dict

TARGETS = ("torch", "onnx", "all")
MAX_BATCH = 65536  # a fixed batch baked into the ONNX model


def register(sub) -> None:
    p = add_command(
        sub,
        "compile",
        "compile a spec to ONNX (<name>.onnx) and PyTorch source (<name>.py)",
        """
specc compile specs/allcnn_c.yaml
specc compile specs/allcnn_c.yaml --weights runs/allcnn_c/best.pt -o dist --force
specc compile --weights runs/allcnn_c/best.pt          # the spec the checkpoint records
specc compile specs/allcnn_c.yaml --target onnx --batch 1 --output probs --opset 18
specc transform specs/model_c.yaml --replace-pooling conv | specc compile - --target torch
""",
        description=(
            "Compile a spec. The ONNX model is emitted straight from the spec (not traced), checked"
            " with onnx's checker and strict shape inference, and carries the spec, its hash, the class"
            " labels and the input preprocessing in its metadata. Weights come from a checkpoint"
            " (--weights) or the PyTorch backend's seeded initialisation (--seed). Files are written"
            " atomically and never overwritten without --force."
        ),
    )
    add_spec_options(p)
    p.add_argument("--target", choices=TARGETS, default="all", help="what to write (default: all)")
    p.add_argument("-o", "--out-dir", default="build", metavar="DIR", help="output folder (default: build/)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", metavar="CKPT", help="a specc checkpoint or a plain PyTorch state_dict")
    source.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    add_weights_map_option(p)
    p.add_argument(
        "--ema",
        action="store_true",
        help="compile the exponential moving average of the weights a `specc train --ema` checkpoint holds",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size")
    p.add_argument(
        "--output",
        choices=("logits", "probs"),
        default="logits",
        help="what a classifier returns (a spec without classes or with several outputs returns its output layers)",
    )
    p.add_argument("--no-fold", dest="fold", action="store_false", help="keep batch_norm as its own ONNX node")
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="fp16: float16 weights and activations (for GPUs), parity-checked against fp32 (default fp32)",
    )
    p.add_argument(
        "--io", choices=("fp32", "fp16"), default="fp32", help="the fp16 model's input/output type (default fp32)"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--json", action="store_true", help="print JSON: the summary's data and the files written")
    add_explain_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    refuse_stdout("-o", args.out_dir, "compile's files (ONNX model, PyTorch code)", "a folder")
    check_weights_map(args)
    if args.ema and not args.weights:
        raise UserError("--ema: only with --weights (a checkpoint of `specc train --ema`)")
    batch = _parse_batch(args.batch)
    if args.io == "fp16" and args.precision != "fp16":
        raise UserError("--io fp16: only with --precision fp16 (an fp32 model takes and gives float32)")
    if args.precision == "fp16" and (args.explain or args.target == "torch"):
        what = "--explain" if args.explain else "--target torch"
        raise UserError(f"--precision fp16: for the ONNX model of `specc compile` only, not with {what}")
    source = _checkpoint_spec(args) if args.spec is None and args.weights else spec_source(args.spec)
    result = check(source, args.overrides, **check_kwargs(args))
    for d in result.warnings:
        print(d.format(), file=sys.stderr)
    graph = result.graph
    problem = output_mode_problem(graph, args.output) if not args.explain else None
    if problem:
        raise UserError(f"--output {args.output}: {problem}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: exists and is not a folder")
    targets = ("onnx", "torch") if args.target == "all" else (args.target,)
    paths = {t: out_dir / f"{graph.name}.{'onnx' if t == 'onnx' else 'py'}" for t in targets}
    if args.precision == "fp16" and "onnx" in paths:
        paths["onnx"] = out_dir / f"{graph.name}.fp16.onnx"  # beside the fp32 model, not over it
    explained = explain_path(out_dir, graph, args)
    if explained and "onnx" in paths:
        paths["onnx"] = explained
    folders = [str(p) for p in paths.values() if p.is_dir()]
    if folders:
        raise UserError(f"{', '.join(folders)}: a folder is in the way of the file to write — remove or rename it")
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.force:
        raise UserError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''} — pass --force to overwrite"
        )

    # Everything is generated before anything is written: a failure leaves no partial set.
    contents: dict[str, bytes] = {}
    if "torch" in targets:
        contents["torch"] = _torch_backend().codegen.generate(graph, output=args.output).encode("utf-8")
    if "onnx" in targets or args.weights:  # --weights with --target torch: still check they fit
        weights, provenance = _weights(graph, args)
        if "onnx" in targets:
            contents["onnx"] = _onnx_bytes(graph, weights, provenance, args, batch)

    sizes = write_files({paths[target]: contents[target] for target in targets})  # all or none
    if args.json:
        files = [{"path": str(path), "bytes": size} for path, size in sizes.items()]
        print(json.dumps({"summary": summary_dict(result.report), "wrote": files}, indent=2))
        return 0
    print(render(result.report), end="")
    print("wrote:")
    for path, size in sizes.items():
        print(f"  {path}  ({human_bytes(size)})")
    return 0


def _checkpoint_spec(args) -> Graph:
    """`--weights CKPT` without SPEC: the spec the checkpoint records, as `specc eval` takes it."""
    container, _ = read_state_dict(args.weights)  # checks every field of a specc checkpoint
    if not container or not isinstance(container.get("spec"), str):
        raise UserError(f"{args.weights}: a plain state_dict records no spec — name the SPEC it was trained for")
    return load_graph_text(container["spec"], f"{args.weights} (spec)", args.overrides)


def _parse_batch(value: str) -> str | int:
    if value == "dynamic":
        return value
    try:
        batch = int(value)
    except ValueError:
        batch = 0
    if batch <= 0:
        raise UserError(f"--batch {value}: expected 'dynamic' or a positive integer")
    if batch > MAX_BATCH:
        raise UserError(f"--batch {value}: exceeds the limit of {MAX_BATCH:,} (or 'dynamic')")
    return batch


def _torch_backend():
    try:
        import specc_torch
        import specc_torch.codegen
        import specc_torch.weights
    except ImportError as exc:
        raise UserError(
            f"compile needs the PyTorch backend ({exc}) — install it with pip install 'specc[torch]'"
        ) from None
    return specc_torch


def _weights(graph, args) -> tuple[dict, dict]:
    """numpy weights and where they came from: {"weights": text, "preprocessing": dict|None}."""
    backend = _torch_backend()
    if args.weights:
        field = "ema" if args.ema else "model"
        tensors = backend.weights.load_weights(args.weights, graph, args.weights_map, field)
        weights = {k: v.detach().cpu().numpy() for k, v in tensors.items()}
        what = f"checkpoint {Path(args.weights).name}" + (" (EMA weights)" if args.ema else "")
        provenance = {"weights": what, "preprocessing": _preprocessing(args.weights)}
        return weights, provenance
    module = backend.build(graph, seed=args.seed, output=args.output)
    return backend.weights.state_dict_numpy(module), {"weights": f"seed {args.seed}", "preprocessing": None}


def _preprocessing(path: str) -> dict | None:
    """The preprocessing a specc checkpoint records (None for a plain state_dict)."""
    payload = read_checkpoint(path)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return payload.get("preprocessing")
    return None


def _onnx_bytes(graph, weights: dict, provenance: dict, args, batch) -> bytes:
    if args.explain:
        return explain_onnx_bytes(graph, weights, provenance, args, batch)
    from specc_onnx import DEFAULT_OPSET, emit, to_bytes, verify

    model = emit(
        graph,
        weights,
        opset=args.opset or DEFAULT_OPSET,
        batch=batch,
        output=args.output,
        fold_bn=args.fold,
        metadata=provenance,
    )
    verify(model, graph)  # the checker and strict shape inference agree with specc, or it is a bug
    if args.precision == "fp16":
        model = _fp16(model, graph, io_fp16=args.io == "fp16")
    return to_bytes(model)


def _fp16(model32, graph, io_fp16: bool):
    """The fp16 model, checked like the fp32 one and against it (onnxruntime, CPU)."""
    from specc_onnx import verify
    from specc_onnx.fp16 import check_parity, to_fp16

    model16 = to_fp16(model32, io_fp16=io_fp16)
    verify(model16, graph)
    try:
        parity = check_parity(model32, model16)
    except ImportError as exc:
        raise UserError(
            f"--precision fp16 checks the model in onnxruntime ({exc}) — pip install 'specc[onnx]'"
        ) from None
    if not parity.ok:
        raise UserError(f"--precision fp16: the fp16 model disagrees with fp32 — {parity.describe()}; nothing written")
    print(f"fp16: {parity.describe()}")
    return model16
