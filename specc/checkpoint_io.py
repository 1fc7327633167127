"""Checkpoint files: the one reader and the one writer every part of specc uses.

A specc checkpoint is a dict saved with `torch.save`:

    {"format": CHECKPOINT_FORMAT, "model": state_dict, "spec": canonical YAML,
     "spec_hash": ..., ...}     (what a run adds: specc/training/checkpoint.py)

and wherever specc reads weights, a plain state_dict is accepted too. Files are read with
`weights_only=True`, so loading one never runs code; every refusal is one line naming the
file. torch is imported inside the functions only: the core stays importable without it.
"""

from __future__ import annotations

import os
import pickle
import stat
import warnings
from pathlib import Path
from typing import Any

from specc.checkpoint_fields import check_fields
from specc.errors import UserError
from specc.fileio import atomic_write

CHECKPOINT_FORMAT = "specc-checkpoint-v1"
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel / DataParallel, torch.compile

# How torch's weights-only unpickler words "this file holds a pickled class or function"
# (torch 2.2 to 2.13): "Unsupported global: GLOBAL __main__.Thing was not an allowed global
# by default", "Trying to load unsupported GLOBAL posix.system whose module posix is
# blocked", and older "Unsupported class". Matched lower-cased, in the error and its context.
_PICKLED_OBJECT_MARKERS = ("unsupported global", "unsupported class", "not an allowed global")


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise UserError(f"reading or writing checkpoints needs PyTorch ({exc}) — pip install 'specc[torch]'") from None
    return torch


def save_checkpoint(path: str | Path, payload: dict) -> int:
    """`torch.save(payload)` to `path` atomically (`specc.fileio`); returns the size."""
    torch = _torch()
    return atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path) -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)`, with one-line errors for a
    missing file, a folder, a device or pipe, an unreadable or damaged file, and a file that
    holds pickled Python objects. torch's own warnings about the file are not shown."""
    path = Path(path)
    _check_regular_file(path)
    torch = _torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "looks like a TorchScript archive": the error says it
            return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # a damaged file raises many types: zip, pickle, EOF, key, runtime, OSError
        raise UserError(f"{path}: {_why_unreadable(exc)}") from None


def read_state_dict(
    path: str | Path, weights_map: str | Path | None = None, field: str = "model"
) -> tuple[dict | None, dict]:
    """(the checkpoint dict or None for a plain state_dict, its state_dict) from a file.

    `field="ema"` takes the exponential moving average of the weights a `specc train --ema`
    checkpoint holds instead of the trained weights.

    The state_dict is unwrapped from a `module.`/`_orig_mod.` prefix, then renamed by
    `weights_map` (a file `read_weights_map` reads) when given. Refused with one line:
    another checkpoint format, and anything that is not a dict of tensors by layer name."""
    payload = read_checkpoint(path)
    container = None
    if isinstance(payload, dict) and ("format" in payload or isinstance(payload.get("model"), dict)):
        if "format" in payload and payload["format"] != CHECKPOINT_FORMAT:
            raise UserError(f"{path}: checkpoint format {payload['format']!r} — expected {CHECKPOINT_FORMAT!r}")
        check_fields(path, payload)  # one line naming the field of a damaged or edited file
        container, payload = payload, payload.get(field)
    if field == "ema" and (container is None or not isinstance(payload, dict) or not payload):
        raise UserError(f"--ema: {path} holds no EMA weights (train with --ema DECAY to keep them)")
    tensor = _torch().Tensor
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, tensor) for v in payload.values()):
        raise UserError(f"{path}: neither a state_dict nor a specc checkpoint (no tensors by layer name)")
    state = unwrapped(payload)
    if weights_map is not None:
        state = apply_weights_map(state, read_weights_map(weights_map), weights_map, path)
    return container, state


WEIGHTS_MAP_FORMAT = "specc-weights-map-v1"
WEIGHTS_MAP_HINT = " — if it holds another model's names, pass --weights-map MAP.yaml (specc import writes one)"


def read_weights_map(path: str | Path) -> dict[str, str]:
    """A weights map (`specc import` writes one): `{format: specc-weights-map-v1, keys: {spec
    key: source key}}` in YAML; one-line refusals naming the file."""
    from specc.errors import SpecError
    from specc.yamlsrc import MAX_FILE_BYTES, load_text, read_regular_file

    path = Path(path)
    try:
        raw = read_regular_file(path, MAX_FILE_BYTES, "a YAML weights map")
    except UserError as exc:
        raise UserError(f"--weights-map {exc}") from None
    try:
        # specc's own YAML reader: a key given twice is an error at its line, not a silent last-wins
        data = load_text(raw.decode("utf-8"), str(path)).data
    except (UnicodeDecodeError, UserError) as exc:
        raise UserError(f"--weights-map {path}: not a YAML weights map ({type(exc).__name__})") from None
    except SpecError as exc:
        raise UserError(f"--weights-map {exc.diagnostics[0].format()}") from None
    if not isinstance(data, dict) or data.get("format") != WEIGHTS_MAP_FORMAT:
        raise UserError(
            f"--weights-map {path}: expected format: {WEIGHTS_MAP_FORMAT} and keys: {{spec key: source key}}"
        )
    keys = data.get("keys")
    if (
        not isinstance(keys, dict)
        or not keys
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items())
    ):
        raise UserError(f"--weights-map {path}: 'keys' must map this spec's state_dict keys to the source's")
    return dict(keys)


def apply_weights_map(state: dict, mapping: dict[str, str], map_path: str | Path, source: str | Path) -> dict:
    """`state` under this spec's names: each mapped key from its source key; source keys the map
    does not name (torch's `num_batches_tracked` counters, a head left out) are dropped."""
    absent = [f"{theirs} (for {ours})" for ours, theirs in mapping.items() if theirs not in state]
    if absent:
        more = f" (+{len(absent) - 3} more)" if len(absent) > 3 else ""
        raise UserError(f"--weights-map {map_path}: {source} has no {', '.join(absent[:3])}{more}")
    return {ours: state[theirs] for ours, theirs in mapping.items()}


def unwrapped(state: dict) -> dict:
    """A state_dict without the prefix a training wrapper put on every key."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(str(k).startswith(prefix) for k in state):
            return {str(k)[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _check_regular_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a directory, not a checkpoint file")
    if not stat.S_ISREG(mode):  # a FIFO would block the reader, a device never end
        raise UserError(f"{path}: not a regular file, not a checkpoint file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: cannot read it (permission denied)")


def _why_unreadable(exc: BaseException) -> str:
    chain = [exc, exc.__context__, exc.__cause__]
    text = " ".join(str(e) for e in chain if e is not None).lower()
    if isinstance(exc, pickle.UnpicklingError) and any(m in text for m in _PICKLED_OBJECT_MARKERS):
        return "holds Python objects other than tensors and plain data — refused (loading it would run arbitrary code)"
    if "torchscript" in text:
        return "a TorchScript archive, not a checkpoint of tensors"
    return "not a readable PyTorch checkpoint (truncated or corrupt?)"
