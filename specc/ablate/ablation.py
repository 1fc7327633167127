"""One ablation from start to end: load the spec, prepare it (preset transforms), derive the
variants, plan the runs, train what is not done yet, and write the report.

`prepare` reads and checks everything without importing torch, so a wrong spec, dataset,
variant or output directory fails in a second, before any training starts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from specc.ablate import report as reports
from specc.ablate.plan import Task, make_tasks, read_result
from specc.ablate.presets import PAPER_LRS, Preset, preset
from specc.ablate.runner import available_cores, describe_status, execute, progress_line, threads_per_job
from specc.ablate.variants import VARIANTS, Skipped, Variant, derive
from specc.emit import to_yaml
from specc.errors import UserError
from specc.fileio import write_text
from specc.frontend import check
from specc.ir import Graph
from specc.outputs import require_classifier
from specc.shapes import DEFAULT_MAX_ACTIVATION_BYTES, DEFAULT_MAX_PARAMS
from specc.training.config import TrainConfig, recipe_of
from specc.training.inputs import check_fits, dataset_name
from specc.transforms import build_steps, run

SELECT = ("val", "test")
DEFAULT_VAL_SPLIT = 0.1


@dataclass(frozen=True)
class Settings:
    """What the user asked for; None means "the preset's, else the default"."""

    variants: tuple[str, ...] = tuple(VARIANTS)
    lrs: tuple[float, ...] | None = None
    seeds: int = 1
    select: str = "val"
    val_split: float | None = None
    epochs: int | None = None
    data: str | None = None
    data_dir: str | None = None
    jobs: int | None = None  # the preset's, else 1
    threads: int | None = None  # in all, split between the jobs
    out: Path | None = None
    preset: str | None = None
    overrides: list[str] = field(default_factory=list)
    max_params: int = DEFAULT_MAX_PARAMS
    max_activation_bytes: int = DEFAULT_MAX_ACTIVATION_BYTES


@dataclass(frozen=True)
class Ablation:
    """A planned ablation: the variants, every run, and what the report says about them."""

    spec_name: str
    variants: list[Variant | Skipped]
    tasks: list[Task]
    out: Path
    jobs: int
    info: dict  # the report's settings block


def prepare(spec, settings: Settings) -> Ablation:
    """Load and check `spec`, derive its variants and plan their runs (no torch)."""
    _check_numbers(settings)
    chosen = preset(settings.preset)
    budgets = {"max_params": settings.max_params, "max_activation_bytes": settings.max_activation_bytes}
    graph = check(
        spec,
        _overrides(chosen, settings),
        max_params=settings.max_params,
        max_activation_bytes=settings.max_activation_bytes,
    ).graph
    require_classifier(graph, "specc ablate")
    graph, prepared = _apply_preset(graph, chosen, budgets)
    cfg = _recipe(graph, settings)
    variants = derive(graph.replace(train=None), settings.variants, **budgets)
    trainable = [v for v in variants if isinstance(v, Variant)]
    if not trainable:
        reasons = "; ".join(f"{v.name}: {v.reason}" for v in variants if isinstance(v, Skipped))
        raise UserError(f"no variant of {graph.name} can be derived: {reasons}")
    for variant in trainable:
        check_fits(variant.graph, cfg)
    lrs = settings.lrs or (chosen.lrs if chosen else PAPER_LRS)
    out = settings.out or Path("runs") / f"ablate-{graph.name}-{cfg.dataset}"
    jobs = _jobs(settings, chosen, runs=len(trainable) * len(lrs) * settings.seeds)
    threads = threads_per_job(jobs, settings.threads)
    tasks = make_tasks(trainable, cfg, lrs, settings.seeds, out, threads)
    info = {
        "dataset": cfg.dataset,
        "preset": settings.preset,
        "preset_note": chosen.note if chosen else None,
        "select": settings.select,
        "val_split": cfg.val_split,
        "seeds": settings.seeds,
        "lrs": list(lrs),
        "epochs": cfg.epochs,
        "recipe": {k: v for k, v in cfg.to_dict().items() if k not in ("lr", "seed")},
        "recipe_text": recipe_text(cfg),
        "transforms": prepared,
        "variants": {v.name: list(v.steps) for v in trainable},
        "jobs": jobs,
        "threads_per_job": threads,
    }
    return Ablation(graph.name, variants, tasks, out, jobs, info)


def execute_ablation(ablation: Ablation, say: Callable[[str], None] | None = None) -> dict:
    """Train every run not done yet (resuming interrupted ones) and write the report after
    each; returns the final report. Raises `Interrupted` when Ctrl-C stops a run."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.perf_counter()
    status = describe_status(ablation.tasks)
    results = {t.name: result for t in status["done"] if (result := read_result(t)) is not None}
    _write_specs(ablation)
    todo = status["interrupted"] + status["new"]
    total = len(ablation.tasks)
    say(
        f"ablation of {ablation.spec_name} on {ablation.info['dataset']}: {_plan_text(ablation)}"
        f" = {total} runs ({len(status['done'])} done, {len(status['interrupted'])} to resume,"
        f" {len(status['new'])} to train); {ablation.jobs} job(s) x {ablation.info['threads_per_job']} thread(s)"
        f" — {ablation.out}"
    )
    for skipped in (v for v in ablation.variants if isinstance(v, Skipped)):
        say(f"skipped {skipped.name} ({skipped.label}): {skipped.reason}")

    def done(task: Task, result: dict) -> None:
        results[task.name] = result
        say(progress_line(len(results), total, task, result))
        # Progress as it comes; the plot (a second of matplotlib) only at the end.
        write_report(ablation, results, time.perf_counter() - started, with_plot=False)

    execute(todo, ablation.jobs, done)
    return write_report(ablation, results, time.perf_counter() - started)


def write_report(ablation: Ablation, results: dict[str, dict], wall_seconds: float, with_plot: bool = True) -> dict:
    report = reports.build(ablation.spec_name, ablation.variants, ablation.tasks, results, ablation.info)
    report["wall_seconds"] = round(wall_seconds, 1)
    report["compute_seconds"] = round(sum(r.get("seconds", 0.0) for r in results.values()), 1)
    reports.write(report, ablation.out, with_plot)
    return report


def recipe_text(cfg: TrainConfig) -> str:
    """`sgd momentum 0.9, weight decay 0.001, batch 128, 4 epochs, cosine ...` (no lr)."""
    if cfg.schedule == "multistep":
        schedule = f"x{cfg.gamma:g} at epochs {', '.join(map(str, cfg.milestones))}"
    elif cfg.schedule == "cosine":
        schedule = f"cosine decay to {cfg.min_lr:g}"
    else:
        schedule = "constant learning rate"
    if cfg.warmup_epochs:
        schedule += f" after {cfg.warmup_epochs:g} warm-up epoch{'s' if cfg.warmup_epochs != 1 else ''}"
    augment = cfg.augment
    aug = ", ".join(
        text for on, text in ((augment.flip, "flips"), (augment.translate, f"{augment.translate}px shifts")) if on
    )
    return (
        f"{cfg.optimizer} momentum {cfg.momentum:g}, weight decay {cfg.weight_decay:g}, batch {cfg.batch_size},"
        f" {cfg.epochs} epochs, {schedule}; preprocessing {cfg.preprocessing}; augmentation {aug or 'none'}"
    )


# -- helpers -------------------------------------------------------------------------------
def _check_numbers(settings: Settings) -> None:
    for name, value in (("--seeds", settings.seeds), ("--jobs", settings.jobs), ("--epochs", settings.epochs)):
        if value is not None and value < 1:
            raise UserError(f"{name} {value}: expected a positive integer")
    if settings.threads is not None and settings.threads < 1:
        raise UserError(f"--threads {settings.threads}: expected a positive integer")
    if settings.select not in SELECT:
        raise UserError(f"--select {settings.select}: expected val or test")
    if settings.val_split is not None and not 0 <= settings.val_split < 1:
        raise UserError(f"--val-split {settings.val_split}: expected a fraction 0 <= f < 1, e.g. 0.1")
    if settings.select == "val" and settings.val_split == 0:
        raise UserError("--select val needs a validation split: --val-split must be > 0 (e.g. 0.1)")


def _jobs(settings: Settings, chosen: Preset | None, runs: int) -> int:
    if settings.jobs:
        return settings.jobs
    if chosen and chosen.job_per_core:
        return max(1, min(settings.threads or available_cores(), runs))
    return 1


def _overrides(chosen: Preset | None, settings: Settings) -> list[str]:
    """The preset's `--set`s, then the user's, then the flags (each later one wins)."""
    flags = {"dataset": settings.data, "data_dir": settings.data_dir, "epochs": settings.epochs}
    out = chosen.overrides() if chosen else []
    out += list(settings.overrides)
    out += [f"train.{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    return out


def _apply_preset(graph: Graph, chosen: Preset | None, budgets: dict) -> tuple[Graph, list[str]]:
    if not chosen or not chosen.transforms:
        return graph, []
    steps = build_steps(chosen.transforms, dict(chosen.transform_options))
    result = run(graph, steps, **budgets)
    # Class names belong to the dataset the spec was written for (CIFAR's airplane...);
    # the trainer takes the new dataset's own names when the spec gives none.
    return result.graph.replace(labels=None), [t.label() for t in result.steps]


def _recipe(graph: Graph, settings: Settings) -> TrainConfig:
    """The shared recipe, with the validation split the selection needs."""
    train = dict(graph.train or {})
    if settings.val_split is not None:
        train["val_split"] = settings.val_split
    elif settings.select == "val" and not train.get("val_split"):
        train["val_split"] = DEFAULT_VAL_SPLIT
    elif settings.select == "test":
        train["val_split"] = 0.0  # the paper trains on the whole training set
    cfg = recipe_of(train)
    dataset_name(cfg)  # "no dataset: pass --data ..." before anything else
    if settings.select == "val" and cfg.val_split == 0:
        raise UserError("--select val needs a validation split: --val-split must be > 0 (e.g. 0.1)")
    return cfg


def _write_specs(ablation: Ablation) -> None:
    """OUT/<variant>/spec.yaml: each derived network, for `specc summary`, `specc compile`..."""
    for variant in ablation.variants:
        if isinstance(variant, Variant):
            write_text(ablation.out / variant.name / "spec.yaml", to_yaml(variant.graph))


def _plan_text(ablation: Ablation) -> str:
    info = ablation.info
    count = sum(isinstance(v, Variant) for v in ablation.variants)
    return f"{count} variants x {len(info['lrs'])} lrs x {info['seeds']} seed(s)"
