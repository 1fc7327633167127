"""Weights in and out: numpy arrays for the ONNX emitter, checkpoints read and written safely.

A specc checkpoint is a dict `{"format": "specc-checkpoint-v1", "model": state_dict, "spec":
canonical YAML, "spec_hash": ..., ...}` saved with `torch.save`; `load_weights` also accepts a
plain state_dict. Checkpoints are read with `weights_only=True` (no arbitrary unpickling), and
every refusal is one line naming the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from specc.emit import spec_hash, to_yaml
from specc.errors import SpecError, UserError
from specc.ir import Graph
from specc.shapes import infer
from specc.spec import load_graph_text
from specc_torch.module import make_submodules

CHECKPOINT_FORMAT = "specc-checkpoint-v1"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel and torch.compile wrappers
_LISTED = 3  # names shown per list in a mismatch message


def state_dict_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """Every parameter and buffer as a float32, C-contiguous numpy copy, state_dict keys and
    order (BN running statistics included; the integer `num_batches_tracked` counters left out)."""
    out = {}
    for key, tensor in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        out[key] = np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy()).copy()
    return out


def checkpoint_payload(model, **extra) -> dict:
    """A specc checkpoint dict for a `SpeccModule`: its weights and the spec that made them."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "spec": to_yaml(model.graph),
        "spec_hash": spec_hash(model.graph),
        **extra,
    }


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """`torch.save` to a temporary file in the same directory, fsync, then rename over `path`:
    a crash leaves the old checkpoint or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_checkpoint(path: str | Path) -> object:
    """`torch.load(path, map_location="cpu", weights_only=True)`, with one-line errors."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file: zip, pickle, EOF, runtime
        if "Unsupported global" in f"{exc} {exc.__context__}":  # a pickled class, not damage
            raise UserError(
                f"{path}: holds Python objects other than tensors and plain data — refused"
                " (loading it would run arbitrary code)"
            ) from None
        raise UserError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?)") from None


def load_weights(path: str | Path, graph: Graph) -> dict[str, torch.Tensor]:
    """The state_dict in a checkpoint file, checked against `graph`'s layers.

    Accepts a specc checkpoint or a plain state_dict (keys under a `module.`/`_orig_mod.`
    wrapper prefix are unwrapped). A checkpoint whose keys and shapes fit is accepted even if
    its spec differs elsewhere (dropout rates, the train: recipe); otherwise a `UserError`
    names both specs and what differs."""
    payload = read_checkpoint(path)
    state, trained_for = _state_of(payload, Path(path))
    expected = expected_shapes(graph)
    for key in expected:  # older or hand-made state_dicts may lack BN's step counter
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    problems = _differences(state, expected)
    if problems:
        want = f"'{graph.name}' (hash {spec_hash(graph)[:12]}…)"
        if trained_for:
            head = f"{path} was trained for spec {trained_for} but the spec is {want}"
        else:
            head = f"{path} does not fit spec {want}"
        raise UserError(f"{head}: {'; '.join(problems)}")
    return state


def expected_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """state_dict key -> shape of the model `graph` builds (computed on the meta device)."""
    out = {}
    for name, module in make_submodules(graph, infer(graph)).items():
        for key, tensor in module.state_dict().items():
            out[f"{name}.{key}"] = tuple(tensor.shape)
    return out


def _state_of(payload: object, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, "'name' (hash …)" of the spec it was trained for, or "" if unknown)."""
    trained_for = ""
    if isinstance(payload, dict) and "format" in payload:
        if payload["format"] != CHECKPOINT_FORMAT:
            raise UserError(f"{path}: checkpoint format {payload['format']!r} — expected {CHECKPOINT_FORMAT!r}")
        trained_for = _spec_label(payload.get("spec"), payload.get("spec_hash"))
        payload = payload.get("model")
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise UserError(f"{path}: neither a state_dict nor a specc checkpoint (no tensors by layer name)")
    state = dict(payload)
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state, trained_for


def _spec_label(text: object, stored_hash: object) -> str:
    if not isinstance(text, str):
        return ""
    try:
        graph = load_graph_text(text, "<checkpoint spec>")
    except (SpecError, UserError):
        digest = stored_hash if isinstance(stored_hash, str) else "?"
        return f"'<unreadable spec>' (hash {digest[:12]}…)"
    return f"'{graph.name}' (hash {spec_hash(graph)[:12]}…)"


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" (+{len(names) - _LISTED} more)" if len(names) > _LISTED else "")


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def _differences(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> list[str]:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if reshaped:
        shapes = [f"{k} {_dims(tuple(state[k].shape))} vs {_dims(expected[k])}" for k in reshaped]
        problems.append(f"shape of {_listed(shapes)}")
    return problems
