"""The training loop of `specc train`.

Reads top to bottom: setup (device, threads, processes) → data (in memory on the device,
batched and augmented as whole tensors) → model and optimizer → epochs, each of which
trains, evaluates, checkpoints and logs (`specc.training.bookkeeping`).

Reproducibility: weights come from the spec's seeded initialisation, an epoch's order and
augmentation are a pure function of (seed, epoch), the learning rate a pure function of
(epoch, step), and the dropout RNG state is saved with every checkpoint. So a run stopped
at any point — killed between epochs, or stopped mid-epoch by Ctrl-C/SIGTERM, --max-steps or
after a --checkpoint-every checkpoint — and resumed with `--resume` ends with the same
weights, bit for bit on the CPU with the same number of threads, as one that never stopped.
The EMA weights are saved too; early stopping and the best k are replayed from the history.

The host does not look at the device during a step: loss, accuracy and "was the loss
finite" are tallied on the device (`specc.training.tally`) and read every SYNC_EVERY steps and
at the epoch's end, so GPU steps are queued back to back.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from specc.errors import UserError
from specc.ir import Graph
from specc.outputs import require_classifier
from specc.training import bookkeeping, checkpoint, distributed, rundir
from specc.training.config import TrainConfig
from specc.training.distributed import World
from specc.training.features import Ema, check_monitored, early_stop, metric_names
from specc.training.inputs import load_run_data, make_loaders, resume_mode
from specc.training.metrics import Eta, Progress, TensorBoard
from specc.training.schedule import lr_at
from specc.training.setup import StopSignals, autocast_for, configure, make_optimizer, pick_device, rank_seed
from specc.training.tally import SYNC_EVERY, EpochTally, Snapshot

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
    data_mode: str = "auto"  # memory, stream or auto (`specc.training.inputs.choose_mode`)
    workers: int | None = None  # processes decoding streamed data; None: the default
    initial_weights: dict | None = None  # a state_dict to start from (--weights), checked against the spec


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
        self.data = load_run_data(
            graph,
            cfg,
            resume["preprocessing"] if resume else None,
            mode=resume_mode(options.data_mode, resume_path, resume),
            workers=options.workers,
            processes=world.local_size,
        )
        if world.main:
            print(self.data.mode_line, flush=True)
        self.fingerprints = self.data.fingerprints()
        if resume and resume.get("data", self.fingerprints) != self.fingerprints:
            raise UserError(
                f"{resume_path}: the run was trained on other data (fingerprints"
                f" {resume['data']} now {self.fingerprints}) — an exact resume needs the same files"
            )
        if cfg.batch_size % world.size:
            raise UserError(f"batch_size {cfg.batch_size} does not split evenly over {world.size} processes")
        if cfg.accumulate > cfg.batch_size // world.size:
            raise UserError(
                f"accumulate {cfg.accumulate}: more micro-batches than the {cfg.batch_size // world.size}"
                " images each process takes per step"
            )
        # in memory: whole splits on the device; streamed: decoded in DataLoader workers
        self.loader, self.eval_sets, self.preprocess = make_loaders(self.data, cfg, world, device, options.workers)
        self.limit = checkpoint.batch_limit(options.limit_batches, resume_path, resume)
        self.steps = min(len(self.loader), self.limit) if self.limit else len(self.loader)  # per epoch
        self.labels = list(graph.labels) if graph.labels is not None else list(self.data.train.label_names)
        self.top5 = self.classes >= 10
        self.metrics = metric_names(list(self.eval_sets), self.top5, cfg.ema is not None)
        check_monitored(None if cfg.monitor == "auto" else cfg.monitor, "--monitor", self.metrics, self.classes)
        check_monitored(cfg.early_stopping, "--early-stopping", self.metrics, self.classes)

        # ---- model and optimizer
        torch.manual_seed(rank_seed(cfg.seed, world.rank))
        self.model = specc_torch.build(graph, seed=cfg.seed, output="logits")
        if options.initial_weights is not None and not resume:
            self.model.load_state_dict(options.initial_weights)  # --weights: fine-tuning
        self.model = self.model.to(device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # pyright: ignore[reportCallIssue]
        self.optimizer = make_optimizer(self.model, cfg)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        self.autocast = autocast_for(cfg.precision, device)
        self.ema = Ema(self.model, cfg.ema) if cfg.ema is not None else None
        self.epoch, self.step, self.global_step, self.partial = 0, 0, 0, None
        self.history: list[dict] = []
        self.best: dict | None = None  # `specc.training.features.best_record`
        self.resumes: list[dict] = []
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
        self.net, self.ddp = self.model, None
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.net = self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.tensorboard = TensorBoard(self.out, cfg.log_every) if world.main else None
        self.eta = Eta()
        if world.main:
            bookkeeping.prepare_run_dir(self, previous, resume)

    # -------------------------------------------------------------------------------------
    # epochs
    def fit(self) -> dict:
        cfg, world = self.cfg, self.world
        bookkeeping.announce(self)
        progress = Progress(self.options.progress and world.main)
        with StopSignals() as stop:
            while self.epoch < cfg.epochs and not self.stopping_early():
                stats = self.train_epoch(stop, progress)
                if stats is None:
                    if self.stopped is None:
                        bookkeeping.stop(self, stop.requested)  # a signal: raises Interrupted
                    bookkeeping.save_where_it_stands(self)  # --max-steps
                    break
                bookkeeping.finish_epoch(self, stats)
        if not distributed.same_everywhere(self.model, world):
            raise RuntimeError("the processes ended with different weights — DDP lost synchronisation")
        if self.tensorboard is not None:
            self.tensorboard.close()
        return bookkeeping.summary(self)

    def stopping_early(self) -> bool:
        """Early stopping, replayed from the history: the same answer after a resume."""
        cfg = self.cfg
        if cfg.early_stopping is None or self.step:
            return False
        return early_stop(self.history, cfg.early_stopping, cfg.patience, cfg.min_delta).stop

    def train_epoch(self, stop: StopSignals, progress: Progress) -> dict | None:
        """One pass over the training shard from batch `self.step`; None if told to stop (a
        signal) or out of steps (--max-steps)."""
        cfg, steps = self.cfg, self.steps
        self.loader.set_epoch(self.epoch)
        self.net.train()
        tally = EpochTally(self.device, self.partial, self.top5)
        seconds = self.partial["seconds"] if self.partial else 0.0
        progress.start(self.epoch + 1, cfg.epochs, steps, self.step)
        started, first, lr = time.perf_counter(), self.step, lr_at(cfg, self.epoch, self.step, steps)
        batches = itertools.islice(self.loader.batches(self.step), steps - self.step)
        for step, (x, y) in enumerate(batches, start=self.step):
            # A stop is honoured before the step's forward pass draws its dropout masks, so the
            # checkpoint's RNG state is exactly where this step starts. All ranks agree on it.
            if self._should_stop(stop, tally, step, progress, (time.perf_counter() - started, step - first)):
                progress.close()
                self._pause(tally, step, seconds + time.perf_counter() - started)
                return None
            lr = lr_at(cfg, self.epoch, step, steps)
            loss, logits = self.train_step(x, y, lr)
            tally.add(step, loss, logits, y)
            self.global_step += 1
            progress.tick(step + 1)
            if self.tensorboard is not None and cfg.log_every and self.global_step % cfg.log_every == 0:
                self.tensorboard.log_step(self.global_step, float(loss), lr, cfg.batch_size)  # a host sync
            if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0 and step + 1 < steps:
                self._pause(tally, step + 1, seconds + time.perf_counter() - started)
                bookkeeping.save_where_it_stands(self)  # mid-epoch; the epoch's end writes its own
        progress.close()
        seconds += time.perf_counter() - started
        summed = tally.sync(self.world)
        self._check_finite(summed)
        stats = {"loss": summed.loss, "acc": summed.accuracy, "images": summed.seen, "seconds": seconds, "lr": lr}
        if self.top5:
            stats["top5"] = summed.top5
        # this process's own seconds and steps, for the ETA
        stats["session_seconds"], stats["session_steps"] = time.perf_counter() - started, steps - first
        return stats

    def _should_stop(
        self, stop: StopSignals, tally: EpochTally, step: int, progress: Progress, timing: tuple[float, int]
    ) -> bool:
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
                seconds, done = timing
                eta = self.eta_seconds(step, seconds / done if done else None)
                progress.update(step, snapshot.seen, snapshot.loss, snapshot.accuracy, eta)
            if snapshot.stop:
                return True
        return not self.world.distributed and bool(stop.requested)

    def eta_seconds(self, step: int, rate: float | None = None) -> float | None:
        """The whole run's time to go from `step` of the current epoch (`specc.training.metrics.Eta`)."""
        left = (self.steps - step) + (self.cfg.epochs - self.epoch - 1) * self.steps
        if self.options.max_steps is not None:
            left = min(left, max(self.options.max_steps - self.global_step, 0))
        return self.eta.remaining(left, self.cfg.epochs - self.epoch, rate)

    def _pause(self, tally: EpochTally, step: int, seconds: float) -> None:
        """Where the run stands before `step`, for a checkpoint in the middle of the epoch."""
        summed = tally.sync(self.world)
        self._check_finite(summed)  # a diverged run is never checkpointed
        self.step = step
        sums = {"loss_sum": summed.loss_sum, "correct": summed.correct, "seen": summed.seen, "seconds": seconds}
        if self.top5:
            sums["correct5"] = summed.correct5
        self.partial = sums if step else None

    # -------------------------------------------------------------------------------------
    # one step
    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch: (loss, logits), both still on the device. With
        `accumulate` N the batch is split into N micro-batches whose gradients add up to the
        batch's (each loss weighted by its share of the images). A loss that is not finite is
        not caught here but by the tally at the next sync: the run then stops before anything
        is written, naming the first bad step."""
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # (B, C, H, W), NHWC in memory
        self.optimizer.zero_grad(set_to_none=True)
        if cfg.accumulate == 1:
            loss, logits = self._forward_backward(x, y, None)
        else:
            loss, logits = self._accumulate(x, y, cfg.accumulate)
        if self.scaler is not None:
            if cfg.clip_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if cfg.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update()
        return loss, logits

    def _forward_backward(
        self, x: torch.Tensor, y: torch.Tensor, share: float | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one (micro-)batch; its gradient is scaled by `share`."""
        with self.autocast():
            logits = self.net(x)  # (B, classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)
        weighted = loss if share is None else loss * share
        (self.scaler.scale(weighted) if self.scaler is not None else weighted).backward()
        return loss.detach(), logits.detach()

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient accumulation over `parts` micro-batches (DDP syncs on the last one only).
        Batch norm normalises each micro-batch by its own statistics, and dropout draws its
        masks per micro-batch: with those the result is not the large batch's (docs/training.md)."""
        pieces = [(a, b) for a, b in zip(torch.tensor_split(x, parts), torch.tensor_split(y, parts)) if len(b)]
        losses, outputs = [], []
        for i, (xs, ys) in enumerate(pieces):
            share = len(ys) / len(y)
            last = i == len(pieces) - 1
            # DDP all-reduces the gradients in the last backward only
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                loss, logits = self._forward_backward(xs, ys, share)
            losses.append(loss * share)
            outputs.append(logits)
        return torch.stack(losses).sum(), torch.cat(outputs)

    def _check_finite(self, summed: Snapshot) -> None:
        """Stop with TrainingDiverged when some step's loss was NaN/inf (on any rank)."""
        bookkeeping.check_finite(self, summed)


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
