"""Weights in and out: numpy arrays for the ONNX emitter, checkpoints checked against a spec.

Checkpoint files are read and written by the core (`specc.checkpoint_io`: weights_only
reading, atomic writing, one-line refusals); `CHECKPOINT_FORMAT`, `read_checkpoint` and
`save_checkpoint` are re-exported here for the backend's users. `load_weights` accepts a
specc checkpoint or a plain state_dict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from specc.checkpoint_io import (
    CHECKPOINT_FORMAT,
    WEIGHTS_MAP_HINT,
    read_checkpoint,
    read_state_dict,
    save_checkpoint,
)
from specc.emit import spec_hash, to_yaml
from specc.errors import SpecError, UserError
from specc.ir import Graph
from specc.shapes import infer
from specc.spec import load_graph_text
from specc_torch.module import make_submodules

__all__ = [
    "CHECKPOINT_FORMAT",
    "checkpoint_payload",
    "expected_shapes",
    "load_weights",
    "read_checkpoint",
    "save_checkpoint",
    "state_dict_numpy",
]
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


def load_weights(
    path: str | Path, graph: Graph, weights_map: str | Path | None = None, field: str = "model"
) -> dict[str, torch.Tensor]:
    """The state_dict in a checkpoint file, checked against `graph`'s layers.

    Accepts a specc checkpoint or a plain state_dict (keys under a `module.`/`_orig_mod.`
    wrapper prefix are unwrapped). A checkpoint whose keys and shapes fit is accepted even if
    its spec differs elsewhere (dropout rates, the train: recipe); otherwise a `UserError`
    names both specs and what differs. `weights_map` renames a foreign state_dict's keys
    (`specc.checkpoint_io.read_weights_map`); `field="ema"` takes a checkpoint's EMA weights."""
    state, trained_for = _state_of(Path(path), weights_map, field)
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
        hint = WEIGHTS_MAP_HINT if weights_map is None and not trained_for else ""
        raise UserError(f"{head}: {'; '.join(problems)}{hint}")
    return state


def expected_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """state_dict key -> shape of the model `graph` builds: each layer's `weights()` as the op
    table declares them, plus the counters torch keeps beside them (BatchNorm's
    `num_batches_tracked`, read off the module built on the meta device)."""
    report = infer(graph)
    modules = make_submodules(graph, report)
    out: dict[str, tuple[int, ...]] = {}
    for node in graph.nodes:
        declared = node.op.weights([report.shapes[s] for s in node.inputs])
        out.update({f"{node.name}.{suffix}": tuple(shape) for suffix, shape in declared.items()})
        if node.name in modules:
            for key, tensor in modules[node.name].state_dict().items():
                if key not in declared and not tensor.is_floating_point():  # torch's own counters
                    out[f"{node.name}.{key}"] = tuple(tensor.shape)
    return out


def _state_of(
    path: Path, weights_map: str | Path | None = None, field: str = "model"
) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, "'name' (hash …)" of the spec it was trained for, or "" if unknown)."""
    container, state = read_state_dict(path, weights_map, field)
    trained_for = _spec_label(container.get("spec"), container.get("spec_hash")) if container else ""
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
