"""`specc visualize`: guided backpropagation, deconvnet and saliency maps as PNG grids.

The backend (`specc_viz`, torch) is imported when the command runs, never at parse time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from specc.api import check
from specc.backward import METHODS
from specc.checkpoint_io import CHECKPOINT_FORMAT, read_checkpoint
from specc.commands.common import (
    add_command,
    add_spec_options,
    add_weights_map_option,
    check_kwargs,
    check_weights_map,
    spec_source,
)
from specc.errors import UserError, did_you_mean
from specc.fileio import write_text
from specc.outputs import require_classifier

DEFAULT_UNITS = 8
MAX_TILE = 1024  # pixels per tile side
MAX_TOP_K = 1000  # images per unit
DEFAULT_TOP_K = 9


def register(sub) -> None:
    p = add_command(
        sub,
        "visualize",
        "draw what units of a layer respond to: guided backprop, deconvnet or saliency maps (PNG)",
        """
specc visualize specs/allcnn_c.yaml --weights runs/c/best.pt --layer conv6 --unit 5 --image cat.png -o cat.png
specc visualize specs/allcnn_c.yaml --weights best.pt --class 3 --method all --image cat.png -o cls.png
specc visualize specs/allcnn_c.yaml --weights best.pt --layer conv6 --top-units 8 --image cat.png -o top.png
specc visualize specs/allcnn_c.yaml --weights best.pt --layer conv9 --data cifar10 --top-k 9 -o fig3.png
specc visualize specs/model_c.yaml --weights best.pt --layer conv1 --no-image --method deconvnet -o fig2.png
""",
        description=(
            "Reconstruct what units of one layer see (section 3.4 of The All Convolutional Net). Every"
            " ReLU of the network gets the method's backward rule: backprop (saliency), deconvnet"
            " (Zeiler & Fergus; max-pooling routes through the switches of the forward pass) or guided"
            " backpropagation; every other activation (sigmoid, tanh, relu6, elu, gelu, ...) passes its"
            " plain gradient under all three methods. Units are channels (--unit C), positions (--unit C,Y,X), classes"
            " (--class K) or an image's most active channels (--top-units N). The start is an image"
            " (--image), the K images of a dataset that most activate each unit, shown beside the"
            " crop under the unit's receptive field (--data --top-k), or a zero input (--no-image)."
            " Without --weights the network has its seeded initial weights (to try the plumbing)."
        ),
    )
    add_spec_options(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", metavar="CKPT", help="a specc checkpoint or a plain PyTorch state_dict")
    source.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    add_weights_map_option(p)
    p.add_argument("--layer", metavar="NAME", help="the layer whose units to start from (not needed with --class)")
    p.add_argument("--method", choices=(*METHODS, "all"), default="guided", help="backward rule (default guided)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--unit", action="append", metavar="C|C,Y,X", help="a channel or one position (repeatable)")
    which.add_argument("--class", dest="classes", type=int, action="append", metavar="K", help="a class logit")
    which.add_argument(
        "--top-units", type=int, metavar="N", help=f"the N most active channels (default {DEFAULT_UNITS})"
    )
    p.add_argument("--top-by", choices=("max", "mean"), default="max", help="rank channels by max or mean activation")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--image", nargs="+", metavar="FILE", help="PNG/JPEG images, preprocessed as the run was")
    start.add_argument("--data", metavar="DATASET", help="search a dataset for each unit's top images (Figure 3)")
    start.add_argument("--no-image", action="store_true", help="start from a zero input (Figure 2)")
    p.add_argument("--top-k", type=int, metavar="K", help=f"images per unit with --data (default {DEFAULT_TOP_K})")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset lives (cifar, mnist, folder)")
    p.add_argument("--split", choices=("train", "test"), default="test", help="dataset split (default test)")
    p.add_argument("--limit", type=int, metavar="N", help="search only the first N images of the split")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default 128)")
    p.add_argument("--tile", type=int, default=96, metavar="PX", help="tile size in the PNG (default 96)")
    p.add_argument("-o", "--out", required=True, metavar="OUT.png", help="the PNG grid to write")
    p.add_argument("--save-arrays", action="store_true", help="also write the raw maps: OUT.<method>.npy + OUT.json")
    p.add_argument("--json", action="store_true", help="print JSON: the layer, the methods and the files written")
    p.set_defaults(func=run)


def run(args) -> int:
    check_weights_map(args)
    _check_numbers(args)
    result = check(spec_source(args.spec), args.overrides, **check_kwargs(args))
    for d in result.warnings:
        print(d.format(), file=sys.stderr)
    graph = result.graph
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"-o {out}: expected a .png file name")
    try:
        import torch

        import specc_torch
        from specc_torch.weights import load_weights
        from specc_viz import figures, render
    except ImportError as exc:
        raise UserError(f"visualize needs PyTorch ({exc}) — pip install 'specc[torch]'") from None

    model = specc_torch.build(graph, seed=args.seed)
    preprocessing = None
    if args.weights:
        model.load_state_dict(load_weights(args.weights, graph, args.weights_map))
        payload = read_checkpoint(args.weights)
        if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
            preprocessing = payload.get("preprocessing")
    model.eval()
    layer = _layer(model, args)
    methods = list(METHODS) if args.method == "all" else [args.method]
    prepare = _preparer(preprocessing, torch)
    try:
        figure = _figure(args, model, graph, layer, methods, prepare, figures)
    except ValueError as exc:  # a unit outside the layer, an empty dataset, ...
        raise UserError(str(exc)) from None

    image = render.render_grid(figure.rows, tile=args.tile, title=figure.title)
    written = [(out, render.save_png(image, out))]
    if args.save_arrays:
        for method, array in figure.arrays.items():
            path = out.with_suffix(f".{method}.npy")
            written.append((path, render.save_npy(array.astype("float32"), path)))
        manifest = {"spec": graph.name, "layer": layer, "methods": methods, **figure.manifest}
        manifest["arrays"] = {m: out.with_suffix(f".{m}.npy").name for m in figure.arrays}
        path = out.with_suffix(".json")
        written.append((path, write_text(path, json.dumps(manifest, indent=2) + "\n")))
    if args.json:
        files = [{"path": str(path), "bytes": size} for path, size in written]
        print(json.dumps({"spec": graph.name, "layer": layer, "methods": methods, "wrote": files}, indent=2))
        return 0
    print("wrote:")
    for path, size in written:
        print(f"  {path}  ({size:,} bytes)")
    return 0


def _check_numbers(args) -> None:
    for flag, value in (
        ("--top-units", args.top_units),
        ("--top-k", args.top_k),
        ("--limit", args.limit),
        ("--batch-size", args.batch_size),
        ("--tile", args.tile),
    ):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: expected a positive integer")
    for flag, value, limit in (("--tile", args.tile, MAX_TILE), ("--top-k", args.top_k, MAX_TOP_K)):
        if value is not None and value > limit:
            raise UserError(f"{flag} {value}: exceeds the limit of {limit:,}")
    for flag, value in (("--top-k", args.top_k), ("--limit", args.limit), ("--data-dir", args.data_dir)):
        if args.data is None and value is not None:
            raise UserError(f"{flag} needs --data (the dataset to search)")


def _layer(model, args) -> str:
    """The layer name to start from; --class starts from the logits."""
    if args.classes:
        require_classifier(model.graph, "--class")
        if args.layer and args.layer not in (model.output_name, model.graph.output.name):
            raise UserError(f"--class starts from the logits; --layer {args.layer} is another layer — drop one")
        return model.output_name
    if not args.layer:
        raise UserError("--layer NAME is required (or --class K to start from a class logit)")
    if args.layer not in model.shapes:
        raise UserError(
            f"--layer {args.layer}: no such layer in '{model.graph.name}'{did_you_mean(args.layer, model.shapes)}"
        )
    if args.layer not in {s.name for s in model.steps}:
        if not model.graph.is_classifier:
            raise UserError(f"--layer {args.layer}: feeds none of the network's outputs, so it is never computed")
        raise UserError(f"--layer {args.layer}: not computed when the network returns logits — use --class")
    return args.layer


def _units(args):
    from specc_viz.units import Channel, parse_unit

    if args.classes:
        return [Channel(k) for k in args.classes]
    if not args.unit:
        return None
    try:
        return [parse_unit(text) for text in args.unit]
    except ValueError as exc:
        raise UserError(f"--unit: {exc}") from None


def _figure(args, model, graph, layer, methods, prepare, figures):
    from specc_viz.units import Channel

    units = _units(args)
    if args.no_image:
        if units is None:
            count = min(args.top_units or DEFAULT_UNITS, model.shapes[layer][0])
            units = [Channel(c) for c in range(count)]  # no image to rank by: the first channels
        return figures.blank_figure(model, layer, methods, units)
    if args.image:
        import numpy as np

        from specc.commands.predict import load_image

        pixels = np.stack([load_image(path, graph.input_shape) for path in args.image])  # (N, C, H, W)
        names = [Path(p).name for p in args.image]
        top = None if units is not None else (args.top_units or DEFAULT_UNITS)
        return figures.image_figure(
            model, pixels, names, prepare, layer, methods, units=units, top_units=top, top_by=args.top_by
        )
    channels = None
    if units is not None:
        if not all(isinstance(u, Channel) for u in units):
            raise UserError("--data ranks whole channels: give --unit C without a position")
        channels = [u.channel for u in units]
    images = _dataset(args, graph)
    return figures.dataset_figure(
        model,
        images,
        prepare,
        layer,
        methods,
        args.top_k or DEFAULT_TOP_K,
        channels=channels,
        top_units=args.top_units or DEFAULT_UNITS,
        batch_size=args.batch_size,
    )


def _dataset(args, graph):
    """The dataset's raw images (N, C, H, W) uint8, the first --limit of them."""
    from specc.training.data import load_dataset

    c, h, w = graph.input_shape
    options = {"channels": c, "classes": graph.classes or 10} if args.data == "synthetic" else {}
    dataset = load_dataset(args.data, args.data_dir, args.split, image_size=(h, w), **options)
    if dataset.image_shape != graph.input_shape:
        shape = "x".join(map(str, dataset.image_shape))
        raise UserError(
            f"--data {args.data}: images are {shape}, the spec takes {'x'.join(map(str, graph.input_shape))}"
        )
    return dataset.images[: args.limit] if args.limit else dataset.images


def _preparer(preprocessing: dict | None, torch):
    """Raw pixels (N, C, H, W) on 0..255 -> the model's input tensor, as the run prepared them."""
    import numpy as np

    if preprocessing is None:
        return lambda pixels: torch.from_numpy((np.asarray(pixels, dtype=np.float32) / 255.0).astype(np.float32))
    from specc.preprocessing import Preprocessing

    fitted = Preprocessing.from_dict(preprocessing)
    return lambda pixels: torch.from_numpy(fitted.apply(np.asarray(pixels)).astype(np.float32))
