"""`specc train`: train a spec with the recipe of its `train:` section.

Exit status: 0 done; 2 anything the user must fix — the spec, the flags, the data, and a
diverged run (a NaN/inf loss is a recipe problem: lower the learning rate); 130 / 143 after
Ctrl-C / SIGTERM (a checkpoint was written: continue with --resume).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from specc.api import check
from specc.commands.common import (
    add_command,
    add_spec_options,
    add_weights_map_option,
    check_weights_map,
    positive_int,
    positive_number,
    refuse_stdout,
    spec_source,
)
from specc.commands.train_options import (
    add_data_flags,
    add_feature_flags,
    forward_features,
    fraction,
    load_spec,
    whole_number,
)
from specc.emit import spec_hash
from specc.errors import Diagnostic, SourcePos, SpecError, UserError
from specc.ir import Graph
from specc.outputs import require_classifier
from specc.spec import load_graph_text
from specc.training.config import flag_labels, flag_overrides, prepare_process_env, recipe_of
from specc.training.launch import note_run_dir
from specc.training.rundir import check_new_run_dir, check_own_run_dir

EXAMPLES = """
specc train specs/allcnn_c_fmnist.yaml
specc train specs/allcnn_c.yaml --data cifar10 --data-dir ~/data/cifar-10-batches-py
specc train specs/allcnn_c.yaml --data cifar10 --data-dir DIR --lr 0.05 --set train.warmup_epochs=2
specc train specs/allcnn_c.yaml --data cifar10 --data-dir DIR --set train.preprocessing=gcn_zca \\
    --set train.augment.flip=true --set train.augment.translate=2
specc train --resume runs/allcnn_c
specc train specs/allcnn_c_fmnist.yaml --epochs 1 --limit-batches 5 --out /tmp/smoke   # a smoke test
specc train specs/allcnn_c_fmnist.yaml --ema 0.999 --val-split 0.1 --early-stopping val_loss --save-top-k 3 \
    --checkpoint-every 200 --log-every 50
specc train specs/allcnn_c.yaml --data cifar10 --data-dir DIR --nproc 2
torchrun --nproc-per-node 4 -m specc train specs/allcnn_c.yaml --data cifar10 --data-dir DIR --device cuda
"""

DESCRIPTION = """\
Train a spec. The recipe is the spec's `train:` section (validated with the spec), whose
defaults are the All-CNN paper's: SGD, momentum 0.9, weight decay 0.001, lr 0.01, x0.1 at
epochs 200/250/300, 350 epochs. Every flag overrides the spec (`--lr 0.05` is `--set
train.lr=0.05`). RUN_DIR (default runs/<spec name>; a new run starts only in a new or empty
folder) receives config.yaml, last.pt (every epoch, on Ctrl-C/SIGTERM and at --max-steps),
best.pt, metrics.jsonl, metrics.csv and curves.png. Exit status: 0 done, 2 a problem to fix
(spec, flags, data, a diverged loss, a process of --nproc that died), 130/143 interrupted
(continue with --resume RUN_DIR)."""


def register(sub) -> None:
    p = add_command(sub, "train", "train a spec on a dataset (checkpoints, resume, DDP)", EXAMPLES, DESCRIPTION)
    add_spec_options(p)
    data = p.add_argument_group("data")
    data.add_argument(
        "--data", metavar="DATASET", help="cifar10, cifar100, fashion-mnist, mnist, folder, npy, synthetic"
    )
    data.add_argument("--data-dir", metavar="DIR", help="where the dataset's files are")
    data.add_argument("--val-split", type=fraction, metavar="F", help="hold out this fraction of the training set")
    add_data_flags(data)
    recipe = p.add_argument_group("recipe (each overrides the spec's train: section)")
    recipe.add_argument("--epochs", type=positive_int, metavar="N")
    recipe.add_argument("--lr", type=positive_number, metavar="X", help="learning rate")
    recipe.add_argument("--batch-size", type=positive_int, metavar="N", help="images per step over all processes")
    recipe.add_argument("--seed", type=whole_number, metavar="N")
    add_feature_flags(p)
    run = p.add_argument_group("execution")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"))
    run.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="bf16/fp16 train under autocast")
    run.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    run.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads per process (default: all cores)")
    run.add_argument("--nproc", type=positive_int, metavar="N", help="train with N processes on this machine")
    run.add_argument("--max-steps", type=positive_int, metavar="N", help="stop after N steps in all (resumable)")
    run.add_argument(
        "--limit-batches", type=positive_int, metavar="N", help="train on the first N batches of each epoch only"
    )
    run.add_argument("--out", metavar="RUN_DIR", help="the run directory (default runs/<spec name>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    run.add_argument(
        "--weights",
        metavar="CKPT",
        help="start from these weights instead of the seeded initialisation (a specc checkpoint or a plain"
        " state_dict, e.g. of `specc import`: fine-tuning)",
    )
    add_weights_map_option(run)
    run.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    run.add_argument(
        "--json",
        action="store_true",
        help="print the run's summary (last epoch's metrics, best, files) as one JSON document on stdout;"
        " the epoch lines go to stderr",
    )
    p.set_defaults(func=run_command)


def run_command(args) -> int:
    refuse_stdout("--out", args.out, "a run directory", "a folder")
    prepare_process_env()  # before torch is imported, here and in the processes of --nproc
    if args.nproc is not None and "LOCAL_RANK" not in os.environ:
        if args.spec == "-" or (args.spec is None and not args.resume):
            raise UserError("--nproc needs a spec file (the processes cannot share stdin)")
        from specc.training.launch import launch

        return launch(args.nproc, _forward(args))
    from specc.training.launch import in_distributed_job, run_worker

    if in_distributed_job():
        run_worker(lambda: _train(args))  # reports its errors once for the job, then ends the process
    return _train(args)


def _train(args) -> int:
    try:
        return _train_spec(args)
    except SpecError as exc:  # a spec error caused by a flag names the flag, not its `--set`
        raise _relabelled(exc, flag_labels(vars(args))) from None


def _relabelled(exc: SpecError, labels: dict[str, str]) -> SpecError:
    found = []
    for d in exc.diagnostics:
        pos = SourcePos(labels[d.pos.file], d.pos.line, d.pos.col) if d.pos.file in labels else d.pos
        message = d.message
        for assignment, flag in labels.items():
            message = message.replace(assignment, flag)
        found.append(Diagnostic(pos, d.path, message, d.label, d.severity))
    return SpecError(found)


def _train_spec(args) -> int:
    flags = flag_overrides(vars(args))
    check_weights_map(args)
    if args.resume and args.weights:
        raise UserError("--weights with --resume: a resumed run continues from its own checkpoint")
    if args.resume:
        from specc.training.checkpoint import read_for_resume

        path, payload = read_for_resume(args.resume)
        if args.out and Path(args.out).resolve() != path.parent.resolve():
            raise UserError("--out with --resume: a resumed run continues in its own directory")
        graph = check(load_graph_text(payload["spec"], f"{path} (spec)", args.overrides + flags)).graph
        if args.spec:
            _same_architecture(graph, check(spec_source(args.spec), args.overrides).graph, path, args.spec)
        out, resume = path.parent, (path, payload)
        check_own_run_dir(out)
        changes = _changes(payload["config"], graph.train)  # the resume line says them
    else:
        graph = load_spec(args, flags)
        require_classifier(graph, "specc train")
        out, resume, changes = Path(args.out or f"runs/{graph.name}"), None, ""
        check_new_run_dir(out)  # refuses a folder with anything in it that is not a run of ours
    cfg = recipe_of(graph.train)
    _check_early_stopping_flags(args, cfg.early_stopping)
    graph = graph.replace(train=cfg.to_dict())  # checkpoints record every setting explicitly
    from specc.training.inputs import check_fits

    check_fits(graph, cfg)  # before importing torch: a wrong dataset fails at once
    from specc.training.loop import Interrupted, RunOptions, train

    initial = _initial_weights(args, graph)
    note_run_dir(out)
    options = RunOptions(
        out=out,
        resume=resume,
        threads=args.threads,
        command=("specc", "train", *_forward(args)),
        overrides=tuple(args.overrides + flags),
        changes=changes,
        progress=not args.no_progress,
        max_steps=args.max_steps,
        limit_batches=args.limit_batches,
        data_mode=args.data_mode or "auto",
        workers=args.workers,
        initial_weights=initial,
    )
    try:
        # --json: stdout carries the one JSON document; what a run prints goes to stderr.
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            summary = train(graph, cfg, options)
    except Interrupted as exc:
        return exc.code
    if os.environ.get("RANK", "0") == "0":
        if args.json:
            print(json.dumps(summary | {"message": _final_line(summary, args.max_steps)}, indent=2, allow_nan=False))
        else:
            print(_final_line(summary, args.max_steps))
    return 0


def _initial_weights(args, graph):
    """--weights: the state_dict to start from, checked against the spec now (one line naming
    what does not fit, before any data is read)."""
    if not args.weights:
        return None
    from specc_torch.weights import load_weights

    return load_weights(args.weights, graph, args.weights_map)


def _check_early_stopping_flags(args, early_stopping: str | None) -> None:
    """--patience and --min-delta tune early stopping only: given while it is off, they would
    be silently ignored."""
    for flag, value in (("--patience", args.patience), ("--min-delta", args.min_delta)):
        if value is not None and early_stopping is None:
            raise UserError(
                f"{flag} {value:g}: only with --early-stopping METRIC (or train.early_stopping in the spec)"
                " — early stopping is off"
            )


def _changes(saved: dict, train: dict | None) -> str:
    """`epochs 2 -> 3` when flags changed the saved recipe on resume."""
    now, defaults = recipe_of(train).to_dict(), recipe_of(None).to_dict()
    saved = defaults | saved  # a key the run's specc version did not have yet had its default
    return ", ".join(f"{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items() if saved.get(k) != v)


def _same_architecture(trained: Graph, given: Graph, path: Path, source: str) -> None:
    if spec_hash(trained.replace(train=None)) != spec_hash(given.replace(train=None)):
        raise UserError(
            f"{path} was trained for spec '{trained.name}' but {source} is spec '{given.name}' with another"
            " architecture — a run resumes with the spec it started with (omit SPEC to use it)"
        )


def _final_line(summary: dict, max_steps: int | None = None) -> str:
    last, best = summary["last"], summary["best"]
    if summary.get("stopped"):
        run_dir = summary["run_dir"]
        return (
            f"stopped: --max-steps {max_steps} reached {summary['stopped']}; checkpoint {run_dir}/last.pt"
            f" — continue with `specc train --resume {run_dir}`"
        )
    if not last:
        return f"done: nothing to train ({summary['epochs']} epochs already done) — {summary['run_dir']}"
    split = "val" if "val_acc" in last else "test"
    text = f"done: {summary['epochs']} epochs in {_duration(last['elapsed'])}; {split} accuracy {100 * last[f'{split}_acc']:.2f}%"
    if "val_acc" in last:
        text += f", test accuracy {100 * last['test_acc']:.2f}%"
    if best:
        text += f"; best {best['split']} {100 * best['accuracy']:.2f}% at epoch {best['epoch']}"
    if summary.get("early_stopping"):
        text += f"; {summary['early_stopping']}"
    if summary["processes"] > 1:
        text += f"; {summary['processes']} processes ended with identical weights"
    return text + f" — {summary['run_dir']}/best.pt"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _forward(args) -> list[str]:
    """The arguments again, minus --nproc: what each torchrun worker is started with."""
    out = [args.spec] if args.spec else []
    options = (
        ("--data", args.data),
        ("--data-dir", args.data_dir),
        ("--val-split", args.val_split),
        ("--epochs", args.epochs),
        ("--lr", args.lr),
        ("--batch-size", args.batch_size),
        ("--seed", args.seed),
        ("--device", args.device),
        ("--precision", args.precision),
        ("--threads", args.threads),
        ("--max-steps", args.max_steps),
        ("--limit-batches", args.limit_batches),
        ("--data-mode", args.data_mode),
        ("--workers", args.workers),
        ("--out", args.out),
        ("--resume", args.resume),
        ("--weights", args.weights),
        ("--weights-map", args.weights_map),
    )
    for flag, value in options:
        if value is not None:
            out += [flag, str(value)]
    out += forward_features(args)
    for assignment in args.overrides:
        out += ["--set", assignment]
    if args.compile:
        out.append("--compile")
    if args.json:
        out.append("--json")
    if args.no_progress:
        out.append("--no-progress")
    return out
