"""The training loop of `specc train`.

Reads top to bottom: setup (device, threads, processes) → data (in memory on the device,
batched and augmented as whole tensors) → model and optimizer → epochs, each of which
trains, evaluates, checkpoints and logs.

Reproducibility: weights come from the spec's seeded initialisation, an epoch's order and
augmentation are a pure function of (seed, epoch), the learning rate a pure function of
(epoch, step), and the dropout RNG state is saved with every checkpoint. So a run stopped
at any point — killed between epochs, or stopped mid-epoch by Ctrl-C/SIGTERM — and resumed
with `--resume` ends with the same weights, bit for bit on the CPU, as one that never stopped.
"""

from __future__ import annotations

import datetime
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F

from specc.checkpoint_io import CHECKPOINT_FORMAT
from specc.emit import spec_hash, to_dict, to_yaml
from specc.errors import UserError
from specc.ir import Graph
from specc.train import checkpoint, distributed
from specc.train.config import TrainConfig
from specc.train.data import AugmentConfig, TensorLoader, torch_preprocess
from specc.train.distributed import World, all_sum
from specc.train.evaluate import evaluate
from specc.train.inputs import load_run_data
from specc.train.metrics import Progress, TensorBoard, epoch_line, write_config, write_metrics
from specc.train.schedule import describe, lr_at
from specc.train.setup import StopSignals, autocast_for, configure, make_optimizer, pick_device, rank_seed

EXIT_INTERRUPTED: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: a recipe problem the user fixes (exit status 2)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run after writing a checkpoint; `code` is the exit status."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what to train (the recipe)."""

    out: Path
    resume: tuple[Path, dict] | None = None  # (checkpoint path, payload) to continue from
    threads: int | None = None  # torch CPU threads; None: all cores, shared among processes
    command: tuple[str, ...] = field(default_factory=tuple)  # argv, recorded in config.yaml
    progress: bool = True


# -----------------------------------------------------------------------------------------
# the run
class Trainer:
    """One training run. `fit()` runs it to the end (or raises Interrupted/TrainingDiverged)."""

    def __init__(self, graph: Graph, cfg: TrainConfig, options: RunOptions, world: World, device: torch.device):
        import specc_torch

        self.graph, self.cfg, self.options, self.world, self.device = graph, cfg, options, world, device
        self.out = options.out
        resume_path, resume = options.resume if options.resume else (None, None)

        # ---- data: whole splits on the device as uint8; batches are gathered and augmented there
        self.data = load_run_data(graph, cfg, resume["preprocessing"] if resume else None)
        self.fingerprints = self.data.fingerprints()
        if resume and resume.get("data", self.fingerprints) != self.fingerprints:
            raise UserError(
                f"{resume_path}: the run was trained on other data (fingerprints"
                f" {resume['data']} now {self.fingerprints}) — an exact resume needs the same files"
            )
        if cfg.batch_size % world.size:
            raise UserError(f"batch_size {cfg.batch_size} does not split evenly over {world.size} processes")
        self.preprocess = torch_preprocess(self.data.preprocessing, device)
        self.loader = TensorLoader(
            torch.from_numpy(self.data.train.images),
            torch.from_numpy(self.data.train.labels),
            cfg.batch_size // world.size,
            shuffle=True,
            drop_last=False,
            preprocess=self.preprocess,
            augment=AugmentConfig(**cfg.augment.model_dump()),
            device=device,
            seed=cfg.seed,
            rank=world.rank,
            world_size=world.size,
        )
        self.eval_sets = {
            split: (torch.from_numpy(ds.images).to(device), torch.from_numpy(ds.labels).to(device))
            for split, ds in self.data.eval_splits().items()
        }
        self.labels = list(graph.labels) if graph.labels is not None else list(self.data.train.label_names)

        # ---- model and optimizer
        torch.manual_seed(rank_seed(cfg.seed, world.rank))
        self.model = specc_torch.build(graph, seed=cfg.seed, output="logits").to(device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # pyright: ignore[reportCallIssue]
        self.optimizer = make_optimizer(self.model, cfg)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        self.autocast = autocast_for(cfg.precision, device)
        self.epoch, self.step, self.partial, self.history, self.best, self.resumes = 0, 0, None, [], None, []
        if resume:
            self._restore(resume)
        self.net = self.model
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.tensorboard = TensorBoard(self.out) if world.main else None
        if world.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_config(self.out / "config.yaml", self._record())

    def _restore(self, payload: dict) -> None:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.step = int(payload["epoch"]), int(payload["step"])
        # Only rank 0 carries the interrupted epoch's sums: they are summed over ranks later.
        self.partial = payload.get("partial") if self.world.main else None
        self.history, self.best = list(payload["history"]), payload.get("best")
        self.resumes = list(payload.get("resumes", [])) + [{"epoch": self.epoch, "step": self.step}]
        if not checkpoint.restore_rng(payload["rng"], self.world) and self.world.main:
            print(
                f"note: the run had {len(payload['rng']['torch'])} processes, this one {self.world.size}:"
                " training continues, but not bit-identically to an uninterrupted run",
                file=sys.stderr,
            )

    # -------------------------------------------------------------------------------------
    # epochs
    def fit(self) -> dict:
        cfg, world = self.cfg, self.world
        self._announce()
        progress = Progress(self.options.progress and world.main)
        with StopSignals() as stop:
            while self.epoch < cfg.epochs:
                stats = self.train_epoch(stop, progress)
                if stats is None:
                    self._stop(stop.requested)
                self.finish_epoch(stats)
        if not distributed.same_everywhere(self.model, world):
            raise RuntimeError("the processes ended with different weights — DDP lost synchronisation")
        if self.tensorboard is not None:
            self.tensorboard.close()
        return self._summary()

    def train_epoch(self, stop: StopSignals, progress: Progress) -> dict | None:
        """One pass over the training shard from batch `self.step`; None if told to stop."""
        cfg, loader, world, device = self.cfg, self.loader, self.world, self.device
        loader.set_epoch(self.epoch)
        steps = len(loader)
        self.net.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
        seconds = 0.0
        if self.partial:
            sums += torch.tensor([self.partial[k] for k in ("loss_sum", "correct", "seen")], dtype=torch.float64)
            seconds = self.partial["seconds"]
        progress.start(self.epoch + 1, cfg.epochs, steps, self.step)
        started, lr = time.perf_counter(), lr_at(cfg, self.epoch, self.step, steps)
        for step, (x, y) in enumerate(loader.batches(self.step), start=self.step):
            # A stop is honoured before the step's forward pass draws its dropout masks, so the
            # checkpoint's RNG state is exactly where this step starts. All ranks must agree.
            if all_sum(torch.tensor([float(stop.requested)], device=device), world).item():
                progress.close()
                partial = all_sum(sums.clone(), world).tolist()
                seconds += time.perf_counter() - started
                self.step = step
                self.partial = dict(zip(("loss_sum", "correct", "seen"), partial)) | {"seconds": seconds}
                return None
            lr = lr_at(cfg, self.epoch, step, steps)
            loss, logits, finite = self.train_step(x, y, lr)
            if not finite:
                progress.close()
                self._diverged(step, steps, lr, loss.item())
            sums[0] += loss.double() * len(y)
            sums[1] += (logits.argmax(dim=1) == y).sum()
            sums[2] += len(y)
            if progress.enabled:
                done = sums.tolist()
                progress.update(step + 1, int(done[2]), done[0] / done[2], done[1] / done[2])
        progress.close()
        seconds += time.perf_counter() - started
        loss_sum, correct, seen = all_sum(sums, world).tolist()
        return {"loss": loss_sum / seen, "acc": correct / seen, "images": seen, "seconds": seconds, "lr": lr}

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """One optimisation step on a batch: (loss, logits, finite). When the loss is not
        finite on some rank, nothing is updated and `finite` is False."""
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # (B, C, H, W), NHWC in memory
        with self.autocast():
            logits = self.net(x)  # (B, classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        # Checked before the update, so the weights stay the last good ones; ranks agree.
        if all_sum((~torch.isfinite(loss.detach())).double().reshape(1), self.world).item():
            return loss.detach(), logits.detach(), False
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach(), logits.detach(), True

    def finish_epoch(self, stats: dict) -> None:
        """Evaluate, then checkpoint, pick best.pt, write metrics and print the epoch line."""
        cfg, world = self.cfg, self.world
        started = time.perf_counter()
        row = {"epoch": self.epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"]}
        for split, (images, labels) in self.eval_sets.items():
            result = evaluate(
                self.model,
                images,
                labels,
                self.preprocess,
                classes=self.graph.classes,
                batch_size=cfg.batch_size,
                world=world,
                autocast=self.autocast,
                channels_last=cfg.channels_last,
            )
            row[f"{split}_loss"], row[f"{split}_acc"] = result.loss, result.accuracy
        eval_seconds = time.perf_counter() - started
        elapsed = (self.history[-1]["elapsed"] if self.history else 0.0) + stats["seconds"] + eval_seconds
        row |= {
            "lr": stats["lr"],
            "seconds": stats["seconds"],
            "eval_seconds": eval_seconds,
            "images_per_s": stats["images"] / max(stats["seconds"], 1e-9),
            "elapsed": elapsed,
        }
        self.history.append(row)
        self.epoch, self.step, self.partial = self.epoch + 1, 0, None
        split = cfg.best_split
        improved = self.best is None or row[f"{split}_acc"] > self.best["accuracy"]
        if improved:
            self.best = {"split": split, "accuracy": row[f"{split}_acc"], "epoch": row["epoch"]}
        payload = self._payload()  # collective (gathers every rank's RNG): all ranks call it
        if world.main:
            checkpoint.save(self.out / checkpoint.LAST, payload)
            if improved:
                checkpoint.save(self.out / checkpoint.BEST, payload)
            write_metrics(self.out, self.history)
            if self.tensorboard is not None:
                self.tensorboard.log(row)
            print(epoch_line(row, cfg.epochs), flush=True)
            if row["epoch"] == 1 and not self.resumes:
                self._check_dead_start(row)
        distributed.barrier(world)

    # -------------------------------------------------------------------------------------
    # checkpoints, faults and reports
    def _payload(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": checkpoint.model_state(self.model),
            "spec": to_yaml(self.graph),
            "spec_hash": spec_hash(self.graph),
            "preprocessing": self.data.preprocessing.to_dict(),
            "labels": self.labels,
            "config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {
                "schedule": self.cfg.schedule,
                "epoch": self.epoch,
                "step": self.step,
                "steps_per_epoch": len(self.loader),
                "lr": lr_at(self.cfg, self.epoch, self.step, len(self.loader)),
            },
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": checkpoint.rng_state(self.world),
            "epoch": self.epoch,
            "step": self.step,
            "partial": self.partial,
            "history": self.history,
            "best": self.best,
            "data": self.fingerprints,
            "resumes": self.resumes,
            "world_size": self.world.size,
            "versions": checkpoint.versions(),
        }

    def _stop(self, signum: int) -> NoReturn:
        """Checkpoint where the run stands (mid-epoch) and leave with 130 / 143."""
        payload = self._payload()
        if self.world.main:
            checkpoint.save(self.out / checkpoint.LAST, payload)
            name = signal.Signals(signum).name
            print(
                f"{name}: stopped at epoch {self.epoch + 1}, step {self.step}/{len(self.loader)};"
                f" checkpoint {self.out / checkpoint.LAST} — continue with `specc train --resume {self.out}`",
                file=sys.stderr,
            )
        distributed.barrier(self.world)
        raise Interrupted(EXIT_INTERRUPTED.get(signum, 130))

    def _diverged(self, step: int, steps: int, lr: float, value: float) -> None:
        last = self.out / checkpoint.LAST
        kept = (
            f"the last good checkpoint {last} (epoch {self.history[-1]['epoch']}) is kept"
            if self.history and last.exists()
            else "no checkpoint was written yet"
        )
        what = f"{value}" if not math.isfinite(value) else "not finite (on another process)"
        raise TrainingDiverged(
            f"epoch {self.epoch + 1}, step {step + 1}/{steps}: the loss is {what} at learning rate {lr:.4g}"
            f" — training diverged; {kept}. Lower the learning rate (--lr) or add warm-up"
            " (--set train.warmup_epochs=1)"
        )

    def _check_dead_start(self, row: dict) -> None:
        chance = math.log(self.graph.classes)
        # Logits that are all equal (e.g. all 0 behind a dead ReLU) give exactly ln(classes).
        stuck = abs(row["train_loss"] - chance) < 0.002 * chance
        if stuck and row["train_acc"] < 1.2 / self.graph.classes:
            print(
                f"warning: epoch 1: the training loss stayed at ln({self.graph.classes}) = {chance:.4f}, chance level"
                " — the network is not learning. Likely causes: a ReLU on the class scores whose inputs all"
                " went negative (dead logits; `specc check` warns about it — activation: none on the last"
                " conv fixes it), weights initialised too small (init: he is the default), or a learning"
                " rate too high for the start (try --lr 0.01 or --set train.warmup_epochs=2)",
                file=sys.stderr,
            )

    def _announce(self) -> None:
        if not self.world.main:
            return
        cfg, data = self.cfg, self.data
        params = sum(p.numel() for p in self.model.parameters())
        c, h, w = self.graph.input_shape
        sizes = f"{len(data.train)} train" + (f" / {len(data.val)} val" if data.val is not None else "")
        mode = f"{self.device.type} {cfg.precision}" + (" channels_last" if cfg.channels_last else "")
        threads = torch.get_num_threads()
        mode += f", {threads} thread{'s' if threads != 1 else ''}" + (
            f" x {self.world.size} processes" if self.world.distributed else ""
        )
        start = f"resuming at epoch {self.epoch + 1}" + (f" step {self.step}" if self.step else "")
        print(
            f"specc train: {self.graph.name} ({params:,} parameters) on {cfg.dataset}, {c}x{h}x{w}, {self.graph.classes} classes"
        )
        print(
            f"  data: {sizes} / {len(data.test)} test images, {cfg.preprocessing}, augment {cfg.augment.model_dump()}"
        )
        print(f"  recipe: {describe(cfg)}, batch {cfg.batch_size}, {cfg.epochs} epochs; {mode}")
        print(f"  run dir: {self.out}" + (f" ({start})" if self.resumes else ""), flush=True)

    def _record(self) -> dict:
        """config.yaml: everything this run used."""
        return {
            "command": " ".join(self.options.command),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "resumed": self.resumes,
            "seed": self.cfg.seed,
            "spec_hash": spec_hash(self.graph),
            "spec": to_dict(self.graph),  # its `train:` is the resolved recipe
            "data": {"dataset": self.cfg.dataset, "data_dir": self.cfg.data_dir, **self.data.record()},
            "execution": {
                "device": str(self.device),
                "threads": torch.get_num_threads(),
                "processes": self.world.size,
            },
            "versions": checkpoint.versions(),
        }

    def _summary(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {
            "run_dir": str(self.out),
            "epochs": self.epoch,
            "last": last,
            "best": self.best,
            "processes": self.world.size,
        }


def train(graph: Graph, cfg: TrainConfig, options: RunOptions) -> dict:
    """Run (or continue) a training run; the summary of its end. Raises `Interrupted` after
    a Ctrl-C/SIGTERM checkpoint and `TrainingDiverged` on a NaN/inf loss."""
    world = distributed.world_from_env()
    device = pick_device(cfg.device, world)
    configure(cfg, options.threads, world, device)
    distributed.start(world, device)
    try:
        return Trainer(graph, cfg, options, world, device).fit()
    finally:
        distributed.stop(world)
