"""The training recipe as `specc train` uses it: the `train:` schema (defined in the core,
`specc.train_schema`, because the spec language owns it) and the command-line flags that
edit it. Imports neither torch nor numpy."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from typing import Any

from specc.train_schema import (
    DATASET_NAMES,
    AugmentSettings,
    Dataset,
    TrainConfig,
    check_train,
    recipe_of,
)

__all__ = [
    "DATASET_NAMES",
    "FLAG_KEYS",
    "PROCESS_ENV",
    "AugmentSettings",
    "Dataset",
    "TrainConfig",
    "check_train",
    "flag_labels",
    "flag_overrides",
    "prepare_process_env",
    "recipe_of",
]


# -- the training process's environment ------------------------------------------------------
# Read by the OpenMP runtime when torch is first imported, so `specc train` sets them before
# that (each only where the user has not). OMP_WAIT_POLICY=PASSIVE: torch's intra-op threads
# sleep between parallel regions instead of spinning. On a machine that runs anything else a
# spinning thread burns the time slice of the thread it waits for: measured on 2 shared cores
# (load ~10), ALL-CNN-C batch 128, 2 threads, interleaved: 5.97 s per step spinning, 3.36 s
# passive (benchmarks/bench_train.py, `specc-spin` vs `specc`); on idle cores waking a thread
# costs microseconds per op. It changes no result: same threads, same split of the work.
PROCESS_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def prepare_process_env(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Put PROCESS_ENV into `environ` where unset (before torch is imported); what it set."""
    added = {key: value for key, value in PROCESS_ENV.items() if key not in environ}
    environ.update(added)
    return added


# -- command-line flags --------------------------------------------------------------------
# `specc train --lr 0.05` is `--set train.lr=0.05`: flags go through the spec's own override
# mechanism, so they are validated, located ("--set train.lr=...") and recorded like any edit.
FLAG_KEYS = {
    "data": "dataset",
    "data_dir": "data_dir",
    "epochs": "epochs",
    "lr": "lr",
    "batch_size": "batch_size",
    "device": "device",
    "precision": "precision",
    "seed": "seed",
    "val_split": "val_split",
    "compile": "compile",
    "label_smoothing": "label_smoothing",
    "accumulate": "accumulate",
    "clip_grad_norm": "clip_grad_norm",
    "ema": "ema",
    "monitor": "monitor",
    "save_top_k": "save_top_k",
    "early_stopping": "early_stopping",
    "patience": "patience",
    "min_delta": "min_delta",
    "checkpoint_every": "checkpoint_every",
    "log_every": "log_every",
}


def flag_labels(values: dict[str, Any]) -> dict[str, str]:
    """Each `--set train.KEY=VALUE` that `flag_overrides` writes -> the flag the user typed
    (`--data imagenet`), so that an error names what the user wrote."""
    labels = {}
    for flag, key in FLAG_KEYS.items():
        value = values.get(flag)
        if value is not None:
            typed = f"--{flag.replace('_', '-')}" + ("" if value is True else f" {value}")
            labels[f"--set train.{key}={json.dumps(value)}"] = typed
    return labels


def flag_overrides(values: dict[str, Any]) -> list[str]:
    """`--set`-style assignments for the flags that were given (value not None)."""
    out = []
    for flag, key in FLAG_KEYS.items():
        value = values.get(flag)
        if value is not None:
            out.append(f"train.{key}={json.dumps(value)}")  # JSON is YAML: the value survives
    return out
