"""`specc eval`: error, accuracy, per-class accuracy and the confusion matrix of a checkpoint."""

from __future__ import annotations

import json
import math
import sys

from specc.api import check
from specc.checkpoint_io import read_state_dict
from specc.commands.common import (
    add_command,
    add_spec_options,
    add_weights_map_option,
    check_kwargs,
    positive_int,
)
from specc.errors import UserError
from specc.ir import Graph
from specc.outputs import require_classifier
from specc.spec import load_graph_text

EXAMPLES = """
specc eval --weights runs/allcnn_c_fmnist/best.pt
specc eval specs/allcnn_c.yaml --weights runs/allcnn_c/best.pt --data cifar10 --data-dir DIR
specc eval --weights runs/allcnn_c/last.pt --split train --json
specc eval --weights runs/allcnn_c/last.pt --ema      # the run's EMA weights (specc train --ema)
"""


def register(sub) -> None:
    p = add_command(
        sub,
        "eval",
        "evaluate trained weights: error, accuracy, per-class accuracy, confusion matrix",
        EXAMPLES,
        description=(
            "Evaluate a checkpoint of `specc train` (or a plain state_dict with SPEC) on a dataset split."
            " SPEC, the dataset and the preprocessing default to what the checkpoint recorded."
        ),
    )
    add_spec_options(p)
    p.add_argument("--weights", required=True, metavar="CKPT", help="a checkpoint or state_dict (.pt)")
    add_weights_map_option(p)
    p.add_argument("--data", metavar="DATASET", help="the dataset (default: the one the run trained on)")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset's files are")
    p.add_argument(
        "--split",
        choices=("test", "val", "train"),
        default="test",
        help="which split (default test); val: the part of the training set the run held out (val_split),"
        " train: the rest",
    )
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N", help="images per forward pass")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--ema", action="store_true", help="evaluate the exponential moving average of the weights (train --ema)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from specc.preprocessing import Preprocessing
    from specc.training.config import TrainConfig
    from specc.training.data import ArrayDataset, fit_preprocessing, torch_preprocess
    from specc.training.data.streamloader import StreamSplit
    from specc.training.distributed import World
    from specc.training.evaluate import evaluate
    from specc.training.inputs import check_fits, dataset_name, default_workers, load_split
    from specc.training.setup import pick_device
    from specc_torch import build
    from specc_torch.weights import load_weights

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: expected a positive integer")
    container, _ = read_state_dict(args.weights)  # checks every field of a specc checkpoint
    saved = container or {}
    graph = _graph(args, saved)
    classes = require_classifier(graph, "specc eval")
    # the trained or (--ema) averaged weights; refuses another architecture, naming both specs
    state = load_weights(args.weights, graph, args.weights_map, "ema" if args.ema else "model")
    recipe = {**(saved.get("config") or {}), **(graph.train or {})}
    cfg = TrainConfig.model_validate(recipe).model_copy(
        update={k: v for k, v in (("dataset", args.data), ("data_dir", args.data_dir)) if v is not None}
    )
    check_fits(graph, cfg)
    # train and val: the run's own division; a streamed run's split is streamed again
    mode = "stream" if saved.get("data_mode") == "stream" else "memory"
    data = load_split(graph, cfg, args.split, mode)
    recorded = (saved.get("data") or {}).get(args.split)
    if recorded and recorded != data.fingerprint():
        print(
            f"note: these {args.split} images differ from the ones the run recorded (fingerprint {recorded},"
            f" now {data.fingerprint()}): other files or another dataset",
            file=sys.stderr,
        )
    if saved.get("preprocessing") is not None:
        preprocessing = Preprocessing.from_dict(saved["preprocessing"])
    else:  # a plain state_dict records none: fit the recipe's on the training part, as training did
        train = load_split(graph, cfg, "train")
        assert isinstance(train, ArrayDataset)  # mode "memory"
        preprocessing = fit_preprocessing(cfg.preprocessing, train.images)
    device = pick_device(args.device, World())
    model = build(graph, output="logits")
    model.load_state_dict(state)
    model.to(device)
    if isinstance(data, ArrayDataset):
        images = torch.from_numpy(data.images).to(device)
    else:  # decoded by worker processes, batch by batch
        images = StreamSplit(data, device, default_workers())
    result = evaluate(
        model,
        images,
        torch.from_numpy(data.labels).to(device),
        torch_preprocess(preprocessing, device),
        classes=classes,
        batch_size=args.batch_size,
    )
    labels = list(graph.labels) if graph.labels is not None else list(saved.get("labels") or data.label_names)
    report = _report(graph, args, dataset_name(cfg), labels, result)
    print(json.dumps(report, indent=2) if args.json else _text(report))
    return 0


def _graph(args, saved: dict) -> Graph:
    if args.spec:
        return check(args.spec, args.overrides, **check_kwargs(args)).graph
    if not isinstance(saved.get("spec"), str):
        raise UserError(f"{args.weights}: a plain state_dict records no spec — name the SPEC it was trained for")
    return check(load_graph_text(saved["spec"], f"{args.weights} (spec)", args.overrides), **check_kwargs(args)).graph


def _report(graph: Graph, args, dataset: str, labels: list[str], result) -> dict:
    per_class = result.per_class_accuracy()
    totals = result.confusion.sum(axis=1)
    return {
        "spec": graph.name,
        "weights": args.weights,
        "ema": bool(args.ema),
        "dataset": dataset,
        "split": args.split,
        "images": result.count,
        "loss": result.loss,
        "accuracy": result.accuracy,
        "error": result.error,
        "top5": result.top5,
        "per_class": [
            {
                "index": i,
                "label": labels[i],
                "images": int(totals[i]),
                "accuracy": None if math.isnan(per_class[i]) else float(per_class[i]),
            }
            for i in range(len(per_class))
        ],
        "labels": labels,
        "confusion": result.confusion.tolist(),
    }


def _text(report: dict) -> str:
    lines = [
        f"{report['spec']}{' (EMA weights)' if report['ema'] else ''} on {report['dataset']} {report['split']}"
        f" ({report['images']} images): error {100 * report['error']:.2f}%, accuracy {100 * report['accuracy']:.2f}%"
        + (f", top-5 {100 * report['top5']:.2f}%" if report["top5"] is not None else "")
        + f", loss {report['loss']:.4f}",
        "",
        "per-class accuracy:",
    ]
    width = max(len(c["label"]) for c in report["per_class"])
    for c in report["per_class"]:
        acc = "   n/a" if c["accuracy"] is None else f"{100 * c['accuracy']:6.2f}%"
        lines.append(f"  {c['index']:>3}  {c['label']:<{width}}  {acc}  ({c['images']} images)")
    matrix = report["confusion"]
    cell = max(4, len(str(max(max(row) for row in matrix))) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted class):"]
    lines.append("  true\\pred" + "".join(f"{j:>{cell}}" for j in range(len(matrix))))
    for i, row in enumerate(matrix):
        lines.append(f"  {i:>9}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)
