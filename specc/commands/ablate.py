"""`specc ablate`: the paper's pooling ablation (Table 3) for any spec, with one command.

Exit status: 0 done (report written); 2 anything the user must fix (spec, flags, data, an
output directory holding runs of another recipe); 130 / 143 after Ctrl-C / SIGTERM (the
runs in flight were checkpointed: the same command continues).
"""

from __future__ import annotations

import sys
from pathlib import Path

from specc.commands.common import add_command, add_spec_options, check_kwargs, refuse_stdout, spec_source

EXAMPLES = """
specc ablate specs/model_c.yaml --preset cpu
specc ablate specs/model_c.yaml --preset cpu --out runs/ablate-c   # again: finished runs are kept
specc ablate specs/model_c.yaml --preset paper --data-dir ~/data/cifar-10-batches-py --jobs 4
specc ablate specs/model_c.yaml --preset paper --data-dir DIR --select test   # the paper's lr choice
specc ablate specs/model_a.yaml --data fashion-mnist --set input.channels=1 --set input.size=28 \\
    --variants base,all --lrs 0.05,0.01 --epochs 5 --seeds 3
"""

DESCRIPTION = """\
Derive the Strided, ConvPool and ALL-CNN variants of a spec with the transforms, train each
with the same recipe at every learning rate of --lrs (and --seeds seeds), keep each model's
best rate — chosen on a validation split held out of the training set, or with --select test
on the test set as the paper did — and write a Table 3-style report: OUT/report.md,
OUT/report.json and OUT/error_vs_params.png. The recipe is the spec's `train:` section
(paper defaults), then the preset's settings, then --set, then the flags.

Each training is a `specc train` run in OUT/<variant>/lr<lr>/seed<s>/. Running the command
again trains only what is missing: finished runs are kept and interrupted ones resume from
their checkpoint. --jobs N trains N runs at once, splitting the threads between them.

Presets: paper (CIFAR-10, the paper's 350-epoch schedule, whitening, lrs 0.25,0.1,0.05,0.01
— for GPUs) and cpu (Fashion-MNIST at 1x28x28, a quarter of the width, 4 epochs, lrs 0.05,0.02, one
single-threaded training per core — about 25 minutes on 2 free cores)."""


def register(sub) -> None:
    from specc.ablate.presets import PRESETS
    from specc.ablate.variants import VARIANTS

    p = add_command(sub, "ablate", "train a spec's pooling variants and report them (Table 3)", EXAMPLES, DESCRIPTION)
    add_spec_options(p, optional=False)
    p.add_argument("--data", metavar="DATASET", help="cifar10, cifar100, fashion-mnist, mnist, folder, npy, synthetic")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset's files are")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        metavar="LIST",
        help=f"which to train, from {', '.join(VARIANTS)} (default all four)",
    )
    p.add_argument("--lrs", metavar="LIST", help="learning rates to search, e.g. 0.25,0.1,0.05,0.01 (the paper's)")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs per training")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="train each setting with seeds 0..N-1")
    p.add_argument(
        "--select",
        choices=("val", "test"),
        default="val",
        help="choose each model's lr on a held-out validation split (default) or on the test set",
    )
    p.add_argument("--val-split", type=float, metavar="F", help="the validation fraction (default 0.1)")
    p.add_argument("--jobs", type=int, metavar="N", help="trainings at once (default 1; the cpu preset: one per core)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads in all, split between jobs (default: all)")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/ablate-<spec>-<dataset>)")
    p.add_argument(
        "--preset", choices=tuple(PRESETS), help="paper (CIFAR-10, GPU) or cpu (Fashion-MNIST, ~25 min on 2 cores)"
    )
    p.add_argument("--json", action="store_true", help="print report.json instead of report.md")
    p.set_defaults(func=run_command)


def run_command(args) -> int:
    refuse_stdout("--out", args.out, "the ablation's runs and report", "a folder")
    from specc.ablate.ablation import Settings, execute_ablation, prepare
    from specc.ablate.plan import parse_lrs
    from specc.ablate.runner import interrupted_message
    from specc.ablate.variants import parse_variants

    settings = Settings(
        variants=parse_variants(args.variants),
        lrs=parse_lrs(args.lrs) if args.lrs is not None else None,
        seeds=args.seeds,
        select=args.select,
        val_split=args.val_split,
        epochs=args.epochs,
        data=args.data,
        data_dir=args.data_dir,
        jobs=args.jobs,
        threads=args.threads,
        out=Path(args.out) if args.out else None,
        preset=args.preset,
        overrides=list(args.overrides),
        **check_kwargs(args),
    )
    ablation = prepare(spec_source(args.spec), settings)
    from specc.training.loop import Interrupted

    try:
        execute_ablation(ablation)
    except Interrupted as exc:
        print(interrupted_message(ablation.out), file=sys.stderr)
        return exc.code
    report = (ablation.out / ("report.json" if args.json else "report.md")).read_text()
    print(report, end="" if report.endswith("\n") else "\n")
    print(f"report: {ablation.out / 'report.md'}, {ablation.out / 'report.json'}", file=sys.stderr)
    return 0
