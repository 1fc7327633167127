"""`specc.train`: a training run in this process, with the loop, checkpoints and files of
`specc train`; re-exported by `specc.api` and `specc`. torch is imported on call."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specc.errors import Diagnostic, SourcePos, SpecError
from specc.frontend import SpecLike, check

__all__ = ["TrainResult", "train"]


# -- train ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """The end of a training run: `metrics` of its last evaluated epoch (`train_loss`,
    `train_acc`, `test_acc`, ...; empty when `max_steps` stopped it first), the best epoch
    (`best`: split, accuracy, epoch), and its files."""

    run_dir: Path
    checkpoint: Path  # last.pt: weights, optimizer, spec and recipe (resume with `specc train --resume`)
    best_checkpoint: Path | None  # best.pt, once an epoch was evaluated
    epochs: int
    metrics: dict[str, Any]
    best: dict[str, Any] | None
    stopped: str | None  # where max_steps stopped the run (None: it ran to the end)


def train(
    spec: SpecLike,
    *,
    out: str | Path | None = None,
    max_steps: int | None = None,
    limit_batches: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    quiet: bool = False,
    overrides: list[str] | None = None,
    **recipe: Any,
) -> TrainResult:
    """Train a spec in this process, with the loop, checkpoints and files of `specc train`.
    `recipe` keywords set the spec's `train:` keys (`dataset="synthetic"`, `epochs=1`,
    `lr=0.05`, `augment={"flip": True}`) and are validated like `--set train.KEY=VALUE`.
    `out`: a new or empty run folder (default runs/<spec name>); `max_steps` stops early
    (resumable), `limit_batches` trains on the first N batches of each epoch; `quiet` keeps
    the run's report off stdout (warnings still go to stderr). The run is deterministic for a
    given seed and thread count.

        >>> result = specc.train("specs/allcnn_c_fmnist.yaml", dataset="synthetic", epochs=1, out="runs/api")
        >>> result.checkpoint.name, result.epochs
        ('last.pt', 1)"""
    from specc.outputs import require_classifier
    from specc.training.config import recipe_of
    from specc.training.inputs import check_fits
    from specc.training.rundir import check_new_run_dir

    # Keywords go through the spec's own `--set` mechanism (JSON is YAML), so they are
    # validated and recorded like any edit; an error names the keyword as it was written.
    keywords = {f"--set train.{key}={json.dumps(value)}": f"{key}={value!r}" for key, value in recipe.items()}
    assignments = [label.removeprefix("--set ") for label in keywords]
    try:
        graph = check(spec, [*(overrides or []), *assignments]).graph
    except SpecError as exc:
        raise SpecError([_relabelled(d, keywords) for d in exc.diagnostics]) from None
    require_classifier(graph, "specc.train")
    run_dir = Path(out or f"runs/{graph.name}")
    check_new_run_dir(run_dir)
    cfg = recipe_of(graph.train)
    graph = graph.replace(train=cfg.to_dict())  # checkpoints record every setting explicitly
    check_fits(graph, cfg)
    from specc.training.loop import RunOptions
    from specc.training.loop import train as run_training

    options = RunOptions(
        out=run_dir,
        threads=threads,
        command=("specc.train", graph.name),
        overrides=tuple([*(overrides or []), *assignments]),
        progress=progress,
        max_steps=max_steps,
        limit_batches=limit_batches,
    )
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        summary = run_training(graph, cfg, options)
    best = run_dir / "best.pt"
    return TrainResult(
        run_dir=run_dir,
        checkpoint=run_dir / "last.pt",
        best_checkpoint=best if best.exists() else None,
        epochs=summary["epochs"],
        metrics=dict(summary["last"]),
        best=summary["best"],
        stopped=summary["stopped"] or None,
    )


def _relabelled(d: Diagnostic, keywords: dict[str, str]) -> Diagnostic:
    """A diagnostic whose source is a recipe keyword's `--set`, naming the keyword instead."""
    if d.pos.file not in keywords:
        return d
    pos = SourcePos(keywords[d.pos.file], d.pos.line, d.pos.col)
    return Diagnostic(pos, d.path, d.message, d.label, d.severity)
