"""`specc compile --explain`: the options and the ONNX bytes of an explain model.

Kept apart from compile.py (which calls in here) so the visualization code has one owner;
nothing heavy is imported until an explain model is actually built.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from specc.backward import METHODS
from specc.errors import UserError


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "explanations",
        "emit an ONNX model that computes a map itself: the forward pass, then the backward pass"
        " written as ONNX nodes (written to <name>.<method>.<layer>.onnx)",
    )
    group.add_argument("--explain", choices=METHODS, help="the backward rule of the map")
    group.add_argument("--layer", metavar="NAME", help="the layer whose unit the map starts from")
    group.add_argument(
        "--unit",
        metavar="C|C,Y,X",
        help="a channel or one position, fixed in the model; omitted: a unit_mask input chooses at run time",
    )
    group.add_argument(
        "--explain-seed",
        choices=("auto", "activation", "one"),
        default="auto",
        help="what the map starts from: the unit's activation (the paper's deconvnet seed) or 1 on the unit"
        " (the gradient of its value); auto (default): 1 at the logits (a class), the activation elsewhere",
    )


def explain_path(out_dir: Path, graph, args) -> Path | None:
    """Where the explain model goes, or None when --explain is not given."""
    if not getattr(args, "explain", None):
        if getattr(args, "layer", None) or getattr(args, "unit", None):
            raise UserError("--layer/--unit choose what --explain explains — add --explain guided|deconvnet|backprop")
        return None
    if not args.layer:
        raise UserError("--explain needs --layer NAME (the logits layer for a class)")
    return out_dir / f"{graph.name}.{args.explain}.{args.layer}.onnx"


def explain_onnx_bytes(graph, weights: dict, provenance: dict, args, batch) -> bytes:
    """The checked, serialised explain model for `specc compile --explain`."""
    try:
        from specc_explain_onnx import check_explain_model, emit_explain
        from specc_onnx import DEFAULT_OPSET, to_bytes
    except ImportError as exc:
        raise UserError(f"--explain needs onnx ({exc}) — pip install 'specc[onnx]'") from None
    if args.output != "logits":
        raise UserError("--output chooses what a classifier returns; an --explain model returns maps — drop it")
    # batch_norm stays a node: folding rounds the forward values differently, and a ReLU mask
    # at a value near zero may flip, changing the map far beyond the 1e-4 parity with torch.
    model = emit_explain(
        graph,
        weights,
        method=args.explain,
        layer=args.layer,
        unit=args.unit,
        seed=args.explain_seed,
        opset=args.opset or DEFAULT_OPSET,
        batch=batch,
        fold_bn=False,
        metadata=provenance,
    )
    check_explain_model(model, graph)
    return to_bytes(model)
