"""`specc train`'s own option handling: the flag types that name their accepted range, and
loading the spec when an override leaves no room for the recipe's warm-up."""

from __future__ import annotations

import argparse
import math
import os
import sys

from specc.api import check
from specc.commands.common import check_kwargs, spec_source
from specc.errors import SpecError
from specc.ir import Graph


def fraction(text: str) -> float:
    """An argparse type: a fraction 0 <= f < 1 (nan refused)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction 0 <= f < 1")
    return value


def whole_number(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


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
    from specc.train.config import TrainConfig

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
