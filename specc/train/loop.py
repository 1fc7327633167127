"""The training loop of `specc train`.

Reads top to bottom: setup (device, threads, processes) → data (in memory on the device,
batched and augmented as whole tensors) → model and optimizer → epochs, each of which
trains, evaluates, checkpoints and logs.

Reproducibility: weights come from the spec's seeded initialisation, an epoch's order and
augmentation are a pure function of (seed, epoch), the learning rate a pure function of
(epoch, step), and the dropout RNG state is saved with every checkpoint. So a run stopped
at any point — killed between epochs, or stopped mid-epoch by Ctrl-C/SIGTERM or --max-steps —
and resumed with `--resume` ends with the same weights, bit for bit on the CPU with the same
number of threads, as one that never stopped.

The host does not look at the device during a step: loss, accuracy and "was the loss
finite" are tallied on the device (`specc.train.tally`) and read every SYNC_EVERY steps and
at the epoch's end, so GPU steps are queued back to back.
"""

from __future__ import annotations

import itertools
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F

from specc.emit import spec_hash, to_dict
from specc.errors import UserError
from specc.ir import Graph
from specc.outputs import require_classifier
from specc.train import checkpoint, distributed, messages, rundir
from specc.train.config import TrainConfig
from specc.train.data import AugmentConfig, TensorLoader, torch_preprocess
from specc.train.distributed import World
from specc.train.evaluate import evaluate
from specc.train.inputs import load_run_data
from specc.train.metrics import Progress, TensorBoard, epoch_line, write_config, write_metrics
from specc.train.schedule import describe, lr_at
from specc.train.setup import StopSignals, autocast_for, configure, make_optimizer, pick_device, rank_seed
from specc.train.tally import SYNC_EVERY, EpochTally, Snapshot

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
    overrides: tuple[str, ...] = ()  # the --set assignments (flags included), recorded too
    changes: str = ""  # on resume: what the flags changed, e.g. "epochs 3 -> 4"
    progress: bool = True
    max_steps: int | None = None  # stop once the run has taken this many steps in all
    limit_batches: int | None = None  # train on the first N batches of each epoch only


# -----------------------------------------------------------------------------------------
# the run
class Trainer:
    """One training run. `fit()` runs it to the end (or raises Interrupted/TrainingDiverged)."""

    def __init__(self, graph: Graph, cfg: TrainConfig, options: RunOptions, world: World, device: torch.device):
        import specc_torch

        self.graph, self.cfg, self.options, self.world, self.device = graph, cfg, options, world, device
        self.out = options.out
        self.classes = require_classifier(graph, "specc train")
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
        self.limit = checkpoint.batch_limit(options.limit_batches, resume_path, resume)
        self.steps = min(len(self.loader), self.limit) if self.limit else len(self.loader)  # per epoch
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
        self.epoch, self.step, self.global_step, self.partial = 0, 0, 0, None
        self.history, self.best, self.resumes = [], None, []
        self.stopped: str | None = None  # where --max-steps stopped the run
        self.origin = {
            "command": " ".join(options.command),
            "overrides": list(options.overrides),
            "started": rundir.now(),
        }
        previous = rundir.read_config(self.out) if resume else None
        if resume_path and resume:
            self.origin = rundir.origin_of(previous, resume, self.origin)
            checkpoint.restore(self, resume_path, resume)
        self.net = self.model
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.tensorboard = TensorBoard(self.out) if world.main else None
        if world.main:
            self._prepare_run_dir(previous, resume)

    def _prepare_run_dir(self, previous: dict | None, resume: dict | None) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out {self.out}: cannot create the folder ({exc.strerror or exc})") from None
        removed = rundir.remove_temporary(self.out)
        if removed:
            listed = ", ".join(removed)
            print(
                f"note: removed {len(removed)} temporary file(s) an interrupted write left: {listed}", file=sys.stderr
            )
        resumed = rundir.resume_history(previous, resume) + self.resumes[-1:] if resume else []
        write_config(self.out / rundir.CONFIG, rundir.config_record(self.origin, resumed, self._record()))

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
                    if self.stopped is None:
                        self._stop(stop.requested)  # a signal: raises Interrupted
                    self._save_where_it_stands()  # --max-steps
                    break
                self.finish_epoch(stats)
        if not distributed.same_everywhere(self.model, world):
            raise RuntimeError("the processes ended with different weights — DDP lost synchronisation")
        if self.tensorboard is not None:
            self.tensorboard.close()
        return self._summary()

    def train_epoch(self, stop: StopSignals, progress: Progress) -> dict | None:
        """One pass over the training shard from batch `self.step`; None if told to stop (a
        signal) or out of steps (--max-steps)."""
        cfg, steps = self.cfg, self.steps
        self.loader.set_epoch(self.epoch)
        self.net.train()
        tally = EpochTally(self.device, self.partial)
        seconds = self.partial["seconds"] if self.partial else 0.0
        progress.start(self.epoch + 1, cfg.epochs, steps, self.step)
        started, lr = time.perf_counter(), lr_at(cfg, self.epoch, self.step, steps)
        batches = itertools.islice(self.loader.batches(self.step), steps - self.step)
        for step, (x, y) in enumerate(batches, start=self.step):
            # A stop is honoured before the step's forward pass draws its dropout masks, so the
            # checkpoint's RNG state is exactly where this step starts. All ranks agree on it.
            if self._should_stop(stop, tally, step, progress):
                progress.close()
                self._pause(tally, step, seconds + time.perf_counter() - started)
                return None
            lr = lr_at(cfg, self.epoch, step, steps)
            loss, logits = self.train_step(x, y, lr)
            tally.add(step, loss, logits, y)
            self.global_step += 1
            progress.tick(step + 1)
        progress.close()
        seconds += time.perf_counter() - started
        summed = tally.sync(self.world)
        self._check_finite(summed)
        return {"loss": summed.loss, "acc": summed.accuracy, "images": summed.seen, "seconds": seconds, "lr": lr}

    def _should_stop(self, stop: StopSignals, tally: EpochTally, step: int, progress: Progress) -> bool:
        """Whether to stop before `step`: --max-steps reached, or a signal. The host looks at
        the device's tally only every SYNC_EVERY steps; a single process reads its own signal
        flag at every step, several agree on it when they sync."""
        if self.options.max_steps is not None and self.global_step >= self.options.max_steps:
            self.stopped = checkpoint.position(self.epoch, step, self.steps)
            return True
        if step % SYNC_EVERY == 0:
            snapshot = tally.sync(self.world, bool(stop.requested))
            self._check_finite(snapshot)
            if snapshot.seen:
                progress.update(step, snapshot.seen, snapshot.loss, snapshot.accuracy)
            if snapshot.stop:
                return True
        return not self.world.distributed and bool(stop.requested)

    def _pause(self, tally: EpochTally, step: int, seconds: float) -> None:
        """Where the run stands before `step`, for a checkpoint in the middle of the epoch."""
        summed = tally.sync(self.world)
        self._check_finite(summed)  # a diverged run is never checkpointed
        self.step = step
        sums = {"loss_sum": summed.loss_sum, "correct": summed.correct, "seen": summed.seen, "seconds": seconds}
        self.partial = sums if step else None

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch: (loss, logits), both still on the device. A loss
        that is not finite is not caught here but by the tally at the next sync: the run
        then stops before anything is written, naming the first bad step."""
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # (B, C, H, W), NHWC in memory
        with self.autocast():
            logits = self.net(x)  # (B, classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach(), logits.detach()

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
                classes=self.classes,
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
        payload = checkpoint.payload(self)  # collective (gathers every rank's RNG): all ranks call it
        if world.main:
            checkpoint.save(self.out / checkpoint.LAST, payload)
            if improved:
                checkpoint.save(self.out / checkpoint.BEST, payload)
            write_metrics(self.out, self.history)
            if self.tensorboard is not None:
                self.tensorboard.log(row)
            print(epoch_line(row, cfg.epochs), flush=True)
            warning = messages.dead_start(row, self.classes) if row["epoch"] == 1 and not self.resumes else None
            if warning:
                print(warning, file=sys.stderr)
        distributed.barrier(world)

    # -------------------------------------------------------------------------------------
    # checkpoints, faults and reports
    def _stop(self, signum: int) -> NoReturn:
        """Checkpoint where the run stands (mid-epoch) and leave with 130 / 143."""
        payload = checkpoint.payload(self)
        if self.world.main:
            checkpoint.save(self.out / checkpoint.LAST, payload)
            # With several processes the signal may have reached another one only.
            name = signal.Signals(signum).name if signum else "a signal to another process"
            print(messages.stop_line(name, self.epoch, self.step, self.steps, self.out), file=sys.stderr)
        distributed.barrier(self.world)
        raise Interrupted(EXIT_INTERRUPTED.get(signum, 143))

    def _save_where_it_stands(self) -> None:
        """After --max-steps: a checkpoint of the run as it stands (collective)."""
        payload = checkpoint.payload(self)
        if self.world.main:
            checkpoint.save(self.out / checkpoint.LAST, payload)
        distributed.barrier(self.world)

    def _check_finite(self, summed: Snapshot) -> None:
        """Stop with TrainingDiverged when some step's loss was NaN/inf (on any rank)."""
        if summed.first_bad is None:
            return
        last = self.out / checkpoint.LAST
        last_good = self.history[-1]["epoch"] if self.history and last.exists() else None
        lr = lr_at(self.cfg, self.epoch, summed.first_bad, self.steps)
        text = messages.diverged(self.epoch, summed.first_bad, self.steps, lr, summed.bad_loss, last_good, self.out)
        raise TrainingDiverged(text)

    def _announce(self) -> None:
        if not self.world.main:
            return
        cfg, data = self.cfg, self.data
        sizes = f"{len(data.train)} train" + (f" / {len(data.val)} val" if data.val is not None else "")
        mode = f"{self.device.type} {cfg.precision}" + (" channels_last" if cfg.channels_last else "")
        threads = torch.get_num_threads()
        mode += f", {threads} thread{'s' if threads != 1 else ''}" + (
            f" x {self.world.size} processes" if self.world.distributed else ""
        )
        limits = f", first {self.steps} batches of each" if self.limit else ""
        limits += f", at most {self.options.max_steps} steps in all" if self.options.max_steps else ""
        lines = messages.banner(
            name=self.graph.name,
            params=sum(p.numel() for p in self.model.parameters()),
            dataset=cfg.dataset,
            shape=self.graph.input_shape,
            classes=self.classes,
            data_line=f"{sizes} / {len(data.test)} test images, {cfg.preprocessing}, augment {cfg.augment.model_dump()}",
            recipe_line=f"{describe(cfg)}, batch {cfg.batch_size}, {cfg.epochs} epochs{limits}",
            mode=mode,
            out=self.out,
            resumed_at=checkpoint.position(self.epoch, self.step, self.steps) if self.resumes else None,
        )
        print("\n".join(lines), flush=True)

    def _record(self) -> dict:
        """config.yaml after its head (`specc.train.rundir.config_record`): what this run used."""
        return {
            "seed": self.cfg.seed,
            "spec_hash": spec_hash(self.graph),
            "spec": to_dict(self.graph),  # its `train:` is the resolved recipe
            "data": {"dataset": self.cfg.dataset, "data_dir": self.cfg.data_dir, **self.data.record()},
            "limits": {"batches": self.limit, "max_steps": self.options.max_steps},
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
            "stopped": self.stopped,
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
