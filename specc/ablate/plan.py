"""The ablation's runs: one per (variant, learning rate, seed), each in its own run directory

    OUT/<variant>/lr<lr>/seed<seed>/   config.yaml, last.pt, best.pt, metrics.jsonl (the
                                       trainer's), train.log, ablate.json, result.json

`ablate.json` is written before a run starts and names what it trains (a key over the
architecture and the recipe); `result.json` is written when it has ended. So a run is
*done* when `result.json` exists, *interrupted* when only `last.pt` does (it resumes from
there), and *new* otherwise — and a directory holding a run of another recipe is refused
instead of being silently mixed into the table. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from specc.emit import to_yaml
from specc.errors import UserError
from specc.fileio import write_text
from specc.ir import Graph
from specc.training.config import TrainConfig, recipe_of

RESULT, MARKER, LAST = "result.json", "ablate.json", "last.pt"
# Recipe fields that say where or on what hardware a run happens, not what it computes.
NOT_IN_KEY = ("data_dir", "device")


def parse_lrs(text: str) -> tuple[float, ...]:
    """`0.1,0.05` -> (0.1, 0.05); each must be a number > 0, none twice."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UserError(f"--lrs {text!r}: expected a comma-separated list of learning rates, e.g. 0.1,0.05")
    out = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"--lrs {text}: '{part}' is not a number") from None
        if not value > 0 or value == float("inf"):
            raise UserError(f"--lrs {text}: learning rate {part} must be a number > 0")
        out.append(value)
    if len(set(out)) != len(out):
        raise UserError(f"--lrs {text}: a learning rate is listed twice")
    return tuple(out)


def lr_dir(lr: float) -> str:
    return f"lr{lr:g}"


@dataclass(frozen=True)
class Task:
    """One training of the ablation."""

    variant: str
    lr: float
    seed: int
    run_dir: Path
    spec: str  # canonical YAML of the variant with its full recipe
    key: str
    recipe: dict  # the resolved recipe, for messages
    threads: int | None = None

    @property
    def name(self) -> str:
        return f"{self.variant}/{lr_dir(self.lr)}/seed{self.seed}"

    def status(self) -> str:
        """'done', 'interrupted' or 'new'; refuses a directory holding another run."""
        for name in (RESULT, MARKER):
            path = self.run_dir / name
            if path.exists():
                _check_same(path, self)
        if (self.run_dir / RESULT).exists():
            return "done"
        if (self.run_dir / LAST).exists():
            return "interrupted"
        return "new"


def run_key(graph: Graph) -> str:
    """What a run computes: the architecture and the recipe, not where its files are."""
    recipe = {k: v for k, v in recipe_of(graph.train).to_dict().items() if k not in NOT_IN_KEY}
    text = to_yaml(graph.replace(train=None)) + json.dumps(recipe, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def make_tasks(
    variants, base: TrainConfig, lrs: tuple[float, ...], seeds: int, out: Path, threads: int | None = None
) -> list[Task]:
    """Every (variant, lr, seed) run, variants outermost (the order they are trained in)."""
    tasks = []
    for variant in variants:
        for lr in lrs:
            for seed in range(seeds):
                cfg = TrainConfig.model_validate(base.to_dict() | {"lr": lr, "seed": seed})
                graph = variant.graph.replace(train=cfg.to_dict())
                run_dir = out / variant.name / lr_dir(lr) / f"seed{seed}"
                tasks.append(
                    Task(variant.name, lr, seed, run_dir, to_yaml(graph), run_key(graph), cfg.to_dict(), threads)
                )
    return tasks


def _check_same(path: Path, task: Task) -> None:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc}) — delete it to train this run again") from None
    if record.get("key") == task.key:
        return
    saved = record.get("recipe", {})
    changed = [
        f"{k} {saved.get(k)!r} -> {v!r}" for k, v in task.recipe.items() if k not in NOT_IN_KEY and saved.get(k) != v
    ]
    what = f"another recipe ({', '.join(changed)})" if changed else "another architecture"
    raise UserError(
        f"{task.run_dir} holds a run of {what}: pass another --out, or delete the directory to train it again"
    )


def write_json(path: Path, record: dict) -> None:
    """Atomic: a reader (or a resumed ablation) never sees half a file."""
    write_text(path, json.dumps(record, indent=2) + "\n")


def read_result(task: Task) -> dict | None:
    path = task.run_dir / RESULT
    return json.loads(path.read_text()) if path.exists() else None
