"""What a training run writes and says around its steps: the run directory and config.yaml,
the banner, the end of an epoch (evaluation, last.pt, best.pt and the best k, metrics, the
epoch line), the checkpoints of a stop, and the summary. The steps themselves are in
`specc.training.loop`; every function here takes its `Trainer`.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import TYPE_CHECKING, NoReturn

import torch

from specc.emit import spec_hash, to_dict
from specc.training import checkpoint, distributed, messages, rundir
from specc.training.evaluate import evaluate
from specc.training.features import TOP_FILE, best_record, early_stop, stale_top_files, top_epochs
from specc.training.metrics import epoch_line, write_config, write_metrics
from specc.training.schedule import describe, lr_at
from specc.training.tally import Snapshot

if TYPE_CHECKING:
    from specc.training.loop import Trainer


def prepare_run_dir(t: Trainer, previous: dict | None, resume: dict | None) -> None:
    """Create the folder, clear what a killed write left, and write config.yaml."""
    from specc.errors import UserError

    try:
        t.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {t.out}: cannot create the folder ({exc.strerror or exc})") from None
    removed = rundir.remove_temporary(t.out)
    if removed:
        listed = ", ".join(removed)
        print(f"note: removed {len(removed)} temporary file(s) an interrupted write left: {listed}", file=sys.stderr)
    resumed = rundir.resume_history(previous, resume) + t.resumes[-1:] if resume else []
    write_config(t.out / rundir.CONFIG, rundir.config_record(t.origin, resumed, record(t)))


# -----------------------------------------------------------------------------------------
# the end of an epoch
def evaluate_splits(t: Trainer, model: torch.nn.Module, prefix: str = "") -> dict[str, float]:
    """`{prefix}{split}_loss`, `_acc` and (>= 10 classes) `_top5` of `model` on every evaluated split."""
    row = {}
    for split, (images, labels) in t.eval_sets.items():
        result = evaluate(
            model,
            images,
            labels,
            t.preprocess,
            classes=t.classes,
            batch_size=t.cfg.batch_size,
            world=t.world,
            autocast=t.autocast,
            channels_last=t.cfg.channels_last,
        )
        row[f"{prefix}{split}_loss"], row[f"{prefix}{split}_acc"] = result.loss, result.accuracy
        if result.top5 is not None:
            row[f"{prefix}{split}_top5"] = result.top5
    return row


def finish_epoch(t: Trainer, stats: dict) -> None:
    """Evaluate (the EMA weights too), then checkpoint, keep best.pt and the best k, write
    the metrics and print the epoch line."""
    cfg, world = t.cfg, t.world
    started = time.perf_counter()
    row = {"epoch": t.epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"]}
    if "top5" in stats:
        row["train_top5"] = stats["top5"]
    row |= evaluate_splits(t, t.model)
    if t.ema is not None:
        row |= evaluate_splits(t, t.ema.model, "ema_")
    eval_seconds = time.perf_counter() - started
    elapsed = (t.history[-1]["elapsed"] if t.history else 0.0) + stats["seconds"] + eval_seconds
    row |= {
        "lr": stats["lr"],
        "seconds": stats["seconds"],
        "eval_seconds": eval_seconds,
        "images_per_s": stats["images"] / max(stats["seconds"], 1e-9),
        "elapsed": elapsed,
    }
    t.history.append(row)
    t.epoch, t.step, t.partial = t.epoch + 1, 0, None
    t.eta.add_epoch(stats["session_seconds"], int(stats["session_steps"]), eval_seconds)
    top = top_epochs(t.history, cfg.monitored, cfg.save_top_k)
    t.best = best_record(t.history, cfg.monitored)
    payload = checkpoint.payload(t)  # collective (gathers every rank's RNG): all ranks call it
    if world.main:
        # best.pt and the best k before last.pt: a kill in between resumes from the previous
        # last.pt, redoes this epoch bit for bit and writes them again.
        if top[:1] == [row["epoch"]]:
            checkpoint.save(t.out / checkpoint.BEST, payload)
        if cfg.save_top_k > 1:
            if row["epoch"] in top:
                checkpoint.save(t.out / TOP_FILE.format(epoch=row["epoch"]), payload)
            for stale in stale_top_files(t.out, top):  # also those a kill left behind
                stale.unlink(missing_ok=True)
        checkpoint.save(t.out / checkpoint.LAST, payload)
        write_metrics(t.out, t.history)
        if t.tensorboard is not None:
            t.tensorboard.log(row)
        going_on = t.epoch < cfg.epochs and not t.stopping_early()
        print(epoch_line(row, cfg.epochs, t.eta_seconds(0) if going_on else None), flush=True)
        warning = messages.dead_start(row, t.classes) if row["epoch"] == 1 and not t.resumes else None
        if warning:
            print(warning, file=sys.stderr)
    distributed.barrier(world)


# -----------------------------------------------------------------------------------------
# checkpoints of a stop, faults
def stop(t: Trainer, signum: int) -> NoReturn:
    """Checkpoint where the run stands (mid-epoch) and leave with 130 / 143."""
    from specc.training.loop import EXIT_INTERRUPTED, Interrupted

    payload = checkpoint.payload(t)
    if t.world.main:
        checkpoint.save(t.out / checkpoint.LAST, payload)
        # With several processes the signal may have reached another one only.
        name = signal.Signals(signum).name if signum else "a signal to another process"
        print(messages.stop_line(name, t.epoch, t.step, t.steps, t.out), file=sys.stderr)
    distributed.barrier(t.world)
    raise Interrupted(EXIT_INTERRUPTED.get(signum, 143))


def save_where_it_stands(t: Trainer) -> None:
    """After --max-steps or at a --checkpoint-every step: last.pt as the run stands (collective)."""
    payload = checkpoint.payload(t)
    if t.world.main:
        checkpoint.save(t.out / checkpoint.LAST, payload)
    distributed.barrier(t.world)


def check_finite(t: Trainer, summed: Snapshot) -> None:
    """Stop with TrainingDiverged when some step's loss was NaN/inf (on any rank)."""
    from specc.training.loop import TrainingDiverged

    if summed.first_bad is None:
        return
    last = t.out / checkpoint.LAST
    last_good = t.history[-1]["epoch"] if t.history and last.exists() else None
    lr = lr_at(t.cfg, t.epoch, summed.first_bad, t.steps)
    text = messages.diverged(t.epoch, summed.first_bad, t.steps, lr, summed.bad_loss, last_good, t.out)
    raise TrainingDiverged(text)


# -----------------------------------------------------------------------------------------
# what the run says and records about itself
def features_text(t: Trainer) -> str:
    """`, accumulate 4, clip 1, ema 0.999, early stopping val_loss (patience 3)` for the banner."""
    cfg, parts = t.cfg, []
    if cfg.label_smoothing:
        parts.append(f"label smoothing {cfg.label_smoothing:g}")
    if cfg.accumulate > 1:
        parts.append(f"accumulate {cfg.accumulate} (micro-batch {cfg.batch_size // t.world.size // cfg.accumulate})")
    if cfg.clip_grad_norm is not None:
        parts.append(f"clip grad norm {cfg.clip_grad_norm:g}")
    if cfg.ema is not None:
        parts.append(f"ema {cfg.ema:g}")
    if cfg.early_stopping:
        parts.append(f"early stopping {cfg.early_stopping} (patience {cfg.patience}, min_delta {cfg.min_delta:g})")
    if cfg.save_top_k > 1 or cfg.monitor != "auto":
        parts.append(f"best {cfg.save_top_k} by {cfg.monitored}")
    if cfg.checkpoint_every:
        parts.append(f"checkpoint every {cfg.checkpoint_every} steps")
    return "".join(f", {p}" for p in parts)


def announce(t: Trainer) -> None:
    if not t.world.main:
        return
    cfg, data = t.cfg, t.data
    sizes = f"{len(data.train)} train" + (f" / {len(data.val)} val" if data.val is not None else "")
    mode = f"{t.device.type} {cfg.precision}" + (" channels_last" if cfg.channels_last else "")
    threads = torch.get_num_threads()
    mode += f", {threads} thread{'s' if threads != 1 else ''}" + (
        f" x {t.world.size} processes" if t.world.distributed else ""
    )
    limits = f", first {t.steps} batches of each" if t.limit else ""
    limits += f", at most {t.options.max_steps} steps in all" if t.options.max_steps else ""
    lines = messages.banner(
        name=t.graph.name,
        params=sum(p.numel() for p in t.model.parameters()),
        dataset=cfg.dataset,
        shape=t.graph.input_shape,
        classes=t.classes,
        data_line=f"{sizes} / {len(data.test)} test images, {cfg.preprocessing}, augment {cfg.augment.model_dump()}",
        recipe_line=f"{describe(cfg)}, batch {cfg.batch_size}, {cfg.epochs} epochs{limits}{features_text(t)}",
        mode=mode,
        out=t.out,
        resumed_at=checkpoint.position(t.epoch, t.step, t.steps) if t.resumes else None,
    )
    print("\n".join(lines), flush=True)


def record(t: Trainer) -> dict:
    """config.yaml after its head (`specc.training.rundir.config_record`): what this run used."""
    return {
        "seed": t.cfg.seed,
        "spec_hash": spec_hash(t.graph),
        "spec": to_dict(t.graph),  # its `train:` is the resolved recipe
        "data": {"dataset": t.cfg.dataset, "data_dir": t.cfg.data_dir, **t.data.record()},
        "limits": {"batches": t.limit, "max_steps": t.options.max_steps},
        "execution": {
            "device": str(t.device),
            "threads": torch.get_num_threads(),
            "processes": t.world.size,
        },
        "versions": checkpoint.versions(),
    }


def summary(t: Trainer) -> dict:
    cfg = t.cfg
    last = t.history[-1] if t.history else {}
    early = None
    if cfg.early_stopping and t.stopped is None and t.epoch < cfg.epochs:
        state = early_stop(t.history, cfg.early_stopping, cfg.patience, cfg.min_delta)
        early = state.line(t.epoch, cfg.epochs) if state.stop else None
    return {
        "run_dir": str(t.out),
        "epochs": t.epoch,
        "last": last,
        "best": t.best,
        "processes": t.world.size,
        "stopped": t.stopped,
        "early_stopping": early,
    }
