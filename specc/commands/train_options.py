"""`specc train`'s own option handling: the flag types that name their accepted range, and
loading the spec when an override leaves no room for the recipe's warm-up."""

from __future__ import annotations

import argparse
import math
import os
import sys

from specc.api import check
from specc.commands.common import check_kwargs, positive_int, positive_number, spec_source
from specc.errors import SpecError
from specc.ir import Graph


def _ranged(kind: type, accepts, what: str):
    """An argparse type reading `kind` and refusing values outside a range, naming it
    (`'1.5' is not a fraction 0 <= f < 1`); nan is outside every range."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or (isinstance(value, float) and not math.isfinite(value)) or not accepts(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


fraction = _ranged(float, lambda v: 0 <= v < 1, "a fraction 0 <= f < 1")
whole_number = _ranged(int, lambda v: v >= 0, "a whole number >= 0")
decay = _ranged(float, lambda v: 0 < v < 1, "a decay 0 < d < 1")
non_negative = _ranged(float, lambda v: v >= 0, "a finite number >= 0")


def add_data_flags(group) -> None:
    """--data-mode and --workers: how the data is read, not what is trained (so not part of
    the recipe); a resumed run keeps its data mode."""
    group.add_argument(
        "--data-mode",
        choices=("auto", "memory", "stream"),
        help="memory: whole splits decoded in memory; stream: decoded per batch by --workers"
        " processes (folder, npy); auto (default): stream when the decoded data would take over"
        " a quarter of RAM",
    )
    group.add_argument(
        "--workers",
        type=whole_number,
        metavar="N",
        help="processes decoding the streamed data (0: in the training process; default: one per core, at most 8)",
    )


# The training features' flags (each a `train:` key, `specc.training.config.FLAG_KEYS`): (flag,
# argparse type, metavar, help). `_forward` passes them on to --nproc's workers.
FEATURE_FLAGS = (
    ("--label-smoothing", fraction, "X", "cross-entropy label smoothing 0 <= X < 1"),
    ("--accumulate", positive_int, "N", "split each step's batch into N micro-batches (same result, less memory)"),
    ("--clip-grad-norm", positive_number, "X", "clip the gradients' total norm to X"),
    ("--ema", decay, "DECAY", "keep an exponential moving average of the weights (e.g. 0.999), evaluated too"),
    ("--monitor", str, "METRIC", "the metric that picks best.pt and the best k (e.g. val_loss; default: accuracy)"),
    ("--save-top-k", positive_int, "K", "keep the K best epochs' checkpoints (top-epochE.pt) besides best.pt"),
    ("--early-stopping", str, "METRIC", "stop when METRIC (e.g. val_loss) stops improving"),
    ("--patience", positive_int, "N", "epochs without improvement before early stopping (default 3)"),
    ("--min-delta", non_negative, "X", "the least change of the metric that counts as improvement (default 0)"),
    ("--checkpoint-every", positive_int, "N", "also write last.pt every N steps, mid-epoch (resumable exactly)"),
    ("--log-every", positive_int, "N", "TensorBoard scalars (loss, lr, images/s) every N steps"),
)


def add_feature_flags(parser) -> None:
    """The training features' flags, in their own group of `specc train --help`."""
    group = parser.add_argument_group("training features (each overrides the spec's train: section)")
    for flag, kind, metavar, text in FEATURE_FLAGS:
        group.add_argument(flag, type=kind, metavar=metavar, help=text)


def forward_features(args) -> list[str]:
    """The feature flags that were given, as arguments again."""
    out = []
    for flag, *_ in FEATURE_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            out += [flag, str(value)]
    return out


def load_spec(args, flags: list[str]) -> Graph:
    """The spec with its overrides. When the overrides (e.g. `--epochs 1`) leave the spec's
    warm-up as long as the run, the warm-up is shortened in proportion, with a note, rather
    than refused: the spec's recipe is for its own length."""
    source, overrides = spec_source(args.spec), args.overrides + flags
    try:
        return check(source, overrides, **check_kwargs(args)).graph
    except SpecError as exc:
        shorter = _shorter_warmup(source, overrides, exc)
        if shorter is None:
            raise
    assignment, note = shorter
    graph = check(source, [*overrides, assignment], **check_kwargs(args)).graph
    if os.environ.get("RANK", "0") == "0":
        print(note, file=sys.stderr)
    return graph


def _shorter_warmup(source: str, overrides: list[str], exc: SpecError) -> tuple[str, str] | None:
    """(`train.warmup_epochs=W`, the note) when the only trouble with the warm-up is that the
    overrides made the run too short for it; None otherwise (the error stands)."""
    if source == "-" or any(o.partition("=")[0].strip() == "train.warmup_epochs" for o in overrides):
        return None  # stdin cannot be read twice; a warm-up set on the command line is meant
    caused = [d for d in exc.diagnostics if d.path == "train" and "must be less than epochs" in d.message]
    if not caused or not all("(caused by " in d.message for d in caused):
        return None  # the spec's own recipe is wrong: its error stands
    from specc.spec import load_raw
    from specc.training.config import TrainConfig

    def recipe(extra: list[str]) -> dict:
        train = load_raw(source, extra).data.get("train")
        return train if isinstance(train, dict) else {}

    defaults = TrainConfig.model_validate({})
    spec, now = recipe([]), recipe(overrides)
    warmup, epochs = spec.get("warmup_epochs", defaults.warmup_epochs), spec.get("epochs", defaults.epochs)
    run = now.get("epochs", defaults.epochs)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (warmup, epochs, run)):
        return None
    shorter = float(f"{warmup * run / epochs:.4g}")
    if not 0 < shorter < run:
        return None
    note = (
        f"note: warm-up shortened from {warmup:g} to {shorter:g} epochs: the run is now {run} epoch(s),"
        f" and the spec's warm-up takes {warmup:g} of its {epochs} (kept in proportion)"
    )
    return f"train.warmup_epochs={shorter!r}", note
