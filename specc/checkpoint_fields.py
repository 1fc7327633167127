"""The fields of a specc checkpoint and the type each must have.

`specc.checkpoint_io.read_state_dict` (every command that reads weights) and `specc train
--resume` check a specc checkpoint against this table before using any of it, so a damaged
or hand-edited file ("model" a list, "epoch" a string, an optimizer state of garbage) is
refused in one line naming the file and the field, instead of failing later deep inside
torch. Fields a file lacks are not checked here: what a reader needs, it asks for itself
(`specc.training.checkpoint.RESUME_KEYS`). The meaning of each field is documented where a run
writes it, in `specc/training/checkpoint.py`. torch is imported inside the functions only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specc.errors import UserError


def _integer(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and _tensor(v) for k, v in value.items())


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _optimizer(value: Any) -> bool:
    """torch's `Optimizer.state_dict()`: per-parameter state of tensors and numbers, and groups
    (or an empty dict: no optimizer state)."""
    if value == {}:
        return True
    if not (isinstance(value, dict) and isinstance(value.get("state"), dict)):
        return False
    groups = value.get("param_groups")
    if not (isinstance(groups, list) and groups and all(isinstance(g, dict) for g in groups)):
        return False
    if not all(_strings_or_ints(g.get("params")) for g in groups):
        return False
    for state in value["state"].values():
        if not isinstance(state, dict):
            return False
        if not all(_tensor(v) or _number(v) or v is None for v in state.values()):
            return False
    return True


def _strings_or_ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value)


def _rng(value: Any) -> bool:
    import torch

    if not isinstance(value, dict) or not isinstance(value.get("torch"), list) or not value["torch"]:
        return False
    if not all(_tensor(s) and s.dtype == torch.uint8 and s.ndim == 1 for s in value["torch"]):
        return False
    cuda = value.get("cuda", [])
    return isinstance(cuda, list) and all(
        isinstance(per_rank, list) and all(map(_tensor, per_rank)) for per_rank in cuda
    )


def _row(value: Any) -> bool:
    """One metrics row: numbers by name, `epoch` a whole number."""
    return (
        isinstance(value, dict)
        and _integer(value.get("epoch"), 1)
        and all(isinstance(k, str) and _number(v) for k, v in value.items())
    )


def _partial(value: Any) -> bool:
    keys = ("loss_sum", "correct", "seen", "seconds")
    return value is None or (isinstance(value, dict) and all(_number(value.get(k)) and value[k] >= 0 for k in keys))


def _best(value: Any) -> bool:
    return value is None or (
        isinstance(value, dict)
        and isinstance(value.get("split"), str)
        and _number(value.get("accuracy"))
        and _integer(value.get("epoch"), 1)
    )


def _sampler(value: Any) -> bool:
    keys = ("seed", "epoch", "position", "batch_size", "world_size")
    return isinstance(value, dict) and all(_integer(value.get(k), 0) for k in keys)


def _plain_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


# field -> (what it must be, as the error says it; the check)
FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "format": ("a format name", lambda v: isinstance(v, str)),
    "model": ("a state_dict (tensors by layer name)", _state_dict),
    "spec": ("the spec's YAML text", lambda v: isinstance(v, str)),
    "spec_hash": ("a hash (text)", lambda v: isinstance(v, str)),
    "labels": ("a list of class names", lambda v: v is None or _strings(v)),
    "preprocessing": ("a preprocessing dict", lambda v: v is None or isinstance(v, dict)),
    "config": ("a training recipe (a dict)", lambda v: v is None or _plain_dict(v)),
    "optimizer": ("an optimizer state_dict", _optimizer),
    "scheduler": ("a dict", _plain_dict),
    "scaler": ("a GradScaler state_dict or None", lambda v: v is None or _plain_dict(v)),
    "rng": ("{'torch': [uint8 RNG states per rank], 'cuda': [...]}", _rng),
    "epoch": ("a whole number >= 0", lambda v: _integer(v, 0)),
    "step": ("a whole number >= 0", lambda v: _integer(v, 0)),
    "global_step": ("a whole number >= 0", lambda v: _integer(v, 0)),
    "partial": ("None or running sums {loss_sum, correct, seen, seconds}", _partial),
    "history": ("a list of metrics rows", lambda v: isinstance(v, list) and all(map(_row, v))),
    "best": ("None or {split, accuracy, epoch}", _best),
    "data": ("data fingerprints by split", lambda v: _plain_dict(v) and all(isinstance(x, str) for x in v.values())),
    "resumes": ("a list of dicts", lambda v: isinstance(v, list) and all(map(_plain_dict, v))),
    "world_size": ("a whole number >= 1", lambda v: _integer(v, 1)),
    "threads": ("a whole number >= 1", lambda v: _integer(v, 1)),
    "device": ("a device type", lambda v: isinstance(v, str)),
    "limits": ("a dict", _plain_dict),
    "data_mode": ("'memory' or 'stream'", lambda v: v in ("memory", "stream")),
    "sampler": ("a sampler position {seed, epoch, position, ...}", _sampler),
    "run": ("a dict", _plain_dict),
    "versions": ("a dict", _plain_dict),
}


def check_fields(path: str | Path, payload: dict) -> None:
    """Refuse a specc checkpoint any of whose known fields has the wrong type: one line naming
    the file and the first such field."""
    for name, (expected, valid) in FIELDS.items():
        if name in payload and not valid(payload[name]):
            raise UserError(
                f"{path}: field '{name}' is not {expected} (it is {_describe(payload[name])})"
                " — not a checkpoint as specc writes it: damaged or edited?"
            )
    if payload.get("preprocessing") is not None:
        from specc.preprocessing import Preprocessing

        try:
            Preprocessing.from_dict(payload["preprocessing"])
        except (UserError, TypeError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: field 'preprocessing' is not a fitted preprocessing: {exc}") from None
    if isinstance(payload.get("config"), dict):
        from pydantic import ValidationError

        from specc.train_schema import TrainConfig

        try:
            TrainConfig.model_validate(payload["config"])
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "config"
            raise UserError(
                f"{path}: field 'config' is not a valid training recipe: {where}: {problem['msg']}"
            ) from None


def _describe(value: Any) -> str:
    """`a list`, `the text '3'`, `the number -1`: how a wrong value is named in an error."""
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"the text {shown!r}"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if value is None:
        return "None"
    name = type(value).__name__
    article = "an" if name[0] in "aeiou" else "a"
    if isinstance(value, (dict, list, tuple)):
        return f"{article} {name} of {len(value)} entries, not of the right kinds"
    return f"{article} {name}"
