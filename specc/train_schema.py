"""The training recipe: the schema of the spec's `train:` section, validated like the rest of
the spec. It lives in the core because the spec language owns it (`specc check` validates a
recipe); `specc.training.config` re-exports it for the training code.

Defaults are the All-CNN paper's CIFAR recipe (SGD, momentum 0.9, weight decay 0.001,
×0.1 at epochs 200/250/300, 350 epochs). Of the paper's learning rates {0.25, 0.1, 0.05, 0.01}
the default is 0.01: with He initialisation it is the one measured to train the paper's
networks from the first epoch despite the ReLU on the class scores; 0.1 killed those ReLUs
(all logits 0, loss stuck at ln(classes)) in the same measurement. Larger rates remain a flag
away (`--lr 0.05`), best combined with `warmup_epochs`.

Everything beyond the paper (nesterov, cosine and warm-up schedules, label smoothing, AdamW,
mixed precision) is an option, never a default. This module imports neither torch nor numpy,
so `specc check` validates a recipe instantly.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specc.errors import Diagnostic
from specc.validation import diagnostics_from

PosInt = Annotated[int, Field(strict=True, gt=0)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, Field(strict=True, gt=0)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0)]
Fraction = Annotated[float, Field(strict=True, ge=0, lt=1)]
Flag = Annotated[bool, Field(strict=True)]

# Kept literal (not imported from specc.training.data) so that this module stays numpy-free;
# a test checks they agree with the data layer.
DATASET_NAMES = ("cifar10", "cifar100", "fashion-mnist", "mnist", "folder", "npy", "synthetic")
Dataset = Literal["cifar10", "cifar100", "fashion-mnist", "mnist", "folder", "npy", "synthetic"]
Decay = Annotated[float, Field(strict=True, gt=0, lt=1)]

# The metrics a run records per epoch, which early stopping and best.pt may monitor: loss,
# accuracy and (with >= 10 classes) top-5 accuracy of each split, and of the EMA weights on
# the evaluated splits. A loss is minimised, an accuracy maximised (`monitor_mode`).
Metric = Literal[
    "train_loss", "train_acc", "train_top5",
    "val_loss", "val_acc", "val_top5", "test_loss", "test_acc", "test_top5",
    "ema_val_loss", "ema_val_acc", "ema_val_top5", "ema_test_loss", "ema_test_acc", "ema_test_top5",
]  # fmt: skip
METRIC_TEXT = "a metric: (ema_)val|test_loss|acc|top5 or train_loss|acc|top5, e.g. val_loss"


def monitor_mode(metric: str) -> str:
    """`min` for a loss, `max` for an accuracy."""
    return "min" if metric.endswith("_loss") else "max"


class AugmentSettings(BaseModel):
    """Training augmentation, applied to whole batches on the device."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # `default=` by keyword: type checkers read only that as a field default (`AugmentSettings()`).
    flip: Flag = Field(default=False, description="true or false (random horizontal flips)")
    translate: NonNegInt = Field(default=0, description="a whole number of pixels >= 0 (random pad-and-crop shifts)")
    padding: Literal["zeros", "reflect"] = Field(default="zeros", description="zeros or reflect")


class TrainConfig(BaseModel):
    """The whole recipe. Field descriptions double as the "expected" text of errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # -- data ------------------------------------------------------------------------
    dataset: Dataset | None = Field(None, description="one of " + ", ".join(DATASET_NAMES))
    data_dir: str | None = Field(None, description="a directory holding the dataset's files")
    dataset_options: dict[str, PosInt] = Field(
        default_factory=dict, description="synthetic only: {size: N} (channels and classes follow the spec)"
    )
    preprocessing: Literal["normalize", "gcn_zca", "none"] = Field(
        "normalize", description="normalize (per-channel), gcn_zca (the paper's whitening) or none"
    )
    augment: AugmentSettings = Field(default_factory=AugmentSettings, description="{flip, translate, padding}")
    val_split: Fraction = Field(0.0, description="a fraction 0 <= f < 1 of the training set held out")
    # -- optimisation ----------------------------------------------------------------
    epochs: PosInt = Field(350, description="a positive integer")
    batch_size: PosInt = Field(128, description="a positive integer (images per step, over all processes)")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd or adamw")
    lr: PosFloat = Field(0.01, description="a learning rate > 0")
    momentum: Fraction = Field(0.9, description="a number 0 <= m < 1 (sgd momentum; adamw beta1)")
    nesterov: Flag = Field(False, description="true or false (sgd only)")
    weight_decay: NonNegFloat = Field(0.001, description="a number >= 0")
    schedule: Literal["multistep", "cosine", "constant"] = Field(
        "multistep", description="multistep, cosine or constant"
    )
    milestones: list[PosInt] = Field([200, 250, 300], description="a list of increasing epochs")
    gamma: Annotated[float, Field(strict=True, gt=0, le=1)] = Field(
        0.1, description="a factor 0 < g <= 1 applied at each milestone"
    )
    min_lr: NonNegFloat = Field(0.0, description="a number >= 0 (where cosine ends)")
    warmup_epochs: NonNegFloat = Field(0.0, description="a number of epochs >= 0 of linear warm-up")
    label_smoothing: Fraction = Field(0.0, description="a number 0 <= s < 1")
    accumulate: PosInt = Field(1, description="a positive integer (micro-batches per step)")
    clip_grad_norm: PosFloat | None = Field(None, description="a gradient norm > 0, or null (no clipping)")
    ema: Decay | None = Field(None, description="a decay 0 < d < 1 (e.g. 0.999), or null (no EMA)")
    # -- checkpoints and stopping ----------------------------------------------------
    monitor: Literal["auto"] | Metric = Field("auto", description=f"auto (best_by's accuracy) or {METRIC_TEXT}")
    save_top_k: PosInt = Field(1, description="a positive integer (best checkpoints kept)")
    early_stopping: Metric | None = Field(None, description=f"null or {METRIC_TEXT}")
    patience: PosInt = Field(3, description="a positive integer (epochs without improvement)")
    min_delta: NonNegFloat = Field(0.0, description="a number >= 0 (the least change that counts)")
    checkpoint_every: PosInt | None = Field(None, description="a positive integer (steps), or null")
    log_every: PosInt | None = Field(None, description="a positive integer (steps between TensorBoard scalars)")
    # -- execution -------------------------------------------------------------------
    best_by: Literal["auto", "val", "test"] = Field(
        "auto", description="auto (val when val_split > 0, else test), val or test"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="fp32, bf16 or fp16")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto, cpu or cuda")
    channels_last: Flag = Field(True, description="true or false")
    compile: Flag = Field(False, description="true or false (torch.compile)")
    seed: NonNegInt = Field(0, description="a whole number >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain data, every field explicit: what checkpoints and config.yaml record."""
        return json.loads(self.model_dump_json())

    @property
    def best_split(self) -> str:
        """The split whose accuracy picks `best.pt`."""
        if self.best_by == "auto":
            return "val" if self.val_split > 0 else "test"
        return self.best_by

    @property
    def monitored(self) -> str:
        """The metric that picks `best.pt` and the top-k checkpoints."""
        return f"{self.best_split}_acc" if self.monitor == "auto" else self.monitor


def _cross_checks(cfg: TrainConfig) -> list[tuple[tuple, str]]:
    """(key path, message) for problems no single field shows."""
    out = []
    if cfg.milestones != sorted(set(cfg.milestones)):
        out.append((("milestones",), f"milestones = {cfg.milestones}: must be strictly increasing"))
    if cfg.nesterov and (cfg.optimizer != "sgd" or cfg.momentum == 0):
        out.append((("nesterov",), "nesterov needs optimizer sgd with momentum > 0"))
    if cfg.warmup_epochs >= cfg.epochs:
        out.append((("warmup_epochs",), f"warmup_epochs = {cfg.warmup_epochs} must be less than epochs = {cfg.epochs}"))
    if cfg.best_by == "val" and cfg.val_split == 0:
        out.append((("best_by",), "best_by = 'val' needs a validation set: set val_split, e.g. 0.1"))
    for key in ("monitor", "early_stopping"):
        metric = getattr(cfg, key)
        if isinstance(metric, str) and metric.startswith(("val_", "ema_val_")) and cfg.val_split == 0:
            out.append(((key,), f"{key} = {metric!r} needs a validation set: set val_split, e.g. 0.1"))
        if isinstance(metric, str) and metric.startswith("ema_") and cfg.ema is None:
            out.append(((key,), f"{key} = {metric!r} needs EMA weights: set ema, e.g. 0.999"))
    if cfg.accumulate > cfg.batch_size:
        out.append((("accumulate",), f"accumulate = {cfg.accumulate} exceeds batch_size = {cfg.batch_size}"))
    if cfg.dataset_options and cfg.dataset not in (None, "synthetic"):
        out.append((("dataset_options",), f"dataset {cfg.dataset!r} takes no dataset_options (synthetic only)"))
    for key in cfg.dataset_options:
        if key not in ("size", "channels", "classes"):
            out.append((("dataset_options", key), f"unknown dataset option '{key}' — expected size"))
    return out


def check_train(data: Any, value_pos, key_pos, prefix: str = "train") -> list[Diagnostic]:
    """Located diagnostics for a `train:` mapping; `value_pos`/`key_pos` map a key path
    inside it (e.g. `("lr",)`) to where it was written."""
    if data is None:
        return []
    if not isinstance(data, dict):
        return [Diagnostic(value_pos(()), prefix, "expected a mapping of training settings (lr: 0.01, ...)")]
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as exc:
        return diagnostics_from(exc, TrainConfig, data, value_pos, key_pos, prefix, "", "train")
    return [Diagnostic(value_pos(path), prefix, message) for path, message in _cross_checks(cfg)]


def recipe_of(train: dict | None) -> TrainConfig:
    """The validated recipe of a loaded graph's `train` (already checked at load time)."""
    return TrainConfig.model_validate(train or {})
