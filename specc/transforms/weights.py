"""Carry a trained checkpoint through transforms (`specc transform --weights CKPT --weights-out OUT`).

Weights follow layer names: a transform that keeps a layer's name keeps its weights. The
source checkpoint is first checked against the source spec (every weight present, with its
shape); then every weighted layer of the new graph takes the tensors of the layer of the
same name, unchanged, or reshaped where only the layout changed (a linear weight (units, C)
becoming a 1x1 conv weight (units, C, 1, 1)). A layer that is new or whose weights change
size cannot carry trained weights, and the command says so instead of writing a checkpoint
that would silently load half-random.

Checkpoints are plain state_dicts, or the training format `{"format": "specc-checkpoint-v1",
"model": state_dict, "spec": yaml, ...}`, written back in the same form with "model" and
"spec" updated. torch is imported only here, only when a checkpoint is read or written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from specc.emit import spec_hash, to_yaml
from specc.errors import UserError
from specc.shapes import ShapeReport
from specc.transforms.files import atomic_write

CHECKPOINT_FORMAT = "specc-checkpoint-v1"
TRACKED = "num_batches_tracked"  # torch's batch_norm counter: carried when present, never required


def weight_shapes(report: ShapeReport) -> dict[str, dict[str, tuple[int, ...]]]:
    """Per weighted layer, its state_dict entries (`weight`, `bias`, ...) and their shapes."""
    graph = report.graph
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for node in graph.nodes:
        op = node.op
        cin = report.shapes[node.inputs[0]][0] if node.inputs else 0
        if node.type == "conv":
            kh, kw = op.kernel_hw()
            entries = {"weight": (op.filters, cin // op.groups, kh, kw)}
            if op.bias:
                entries["bias"] = (op.filters,)
        elif node.type == "linear":
            entries = {"weight": (op.units, cin)}
            if op.bias:
                entries["bias"] = (op.units,)
        elif node.type == "batch_norm":
            entries = {"weight": (cin,), "bias": (cin,)} if op.affine else {}
            entries |= {"running_mean": (cin,), "running_var": (cin,)}
        else:
            continue
        out[node.name] = entries
    return out


def _shape(tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape)


def check_state(state: Mapping, report: ShapeReport, file: str) -> None:
    """Every weight of the spec is in `state` with its shape, and `state` holds nothing else."""
    expected = weight_shapes(report)
    name = report.graph.name
    for layer, entries in expected.items():
        for suffix, shape in entries.items():
            key = f"{layer}.{suffix}"
            if key not in state:
                raise UserError(
                    f"{file}: no weight '{key}' for layer {layer} of {name} — a checkpoint of another spec?"
                )
            if _shape(state[key]) != shape:
                raise UserError(f"{file}: '{key}' has shape {list(_shape(state[key]))}, {name} expects {list(shape)}")
    for key in state:
        layer, _, suffix = str(key).rpartition(".")
        if suffix not in expected.get(layer, {}) and not (suffix == TRACKED and layer in expected):
            raise UserError(f"{file}: unexpected weight '{key}' — {name} has no such layer parameter")


def remap_state(state: Mapping, source: ShapeReport, target: ShapeReport, steps: str, file: str) -> dict:
    """The state_dict of `target` built from `state` (a state_dict of `source`).

    `steps` names the transforms for error messages. Tensors are passed through unchanged (or
    reshaped: same values, new layout); works on torch tensors and numpy arrays alike."""
    check_state(state, source, file)
    before, after = weight_shapes(source), weight_shapes(target)
    gone = [layer for layer in before if layer not in after]
    if gone:
        raise UserError(f"--weights: {steps} removes weighted layer {gone[0]}; its trained weights would be lost")
    out: dict = {}
    for layer, entries in after.items():
        if layer not in before:
            kind = target.graph.node(layer).type
            raise UserError(
                f"--weights: {layer} ({kind}) is a new layer after {steps} — it has no trained weights to carry"
            )
        for suffix, shape in entries.items():
            key = f"{layer}.{suffix}"
            if suffix not in before[layer]:
                raise UserError(f"--weights: {key} is new after {steps} — it has no trained value to carry")
            tensor = state[key]
            old = _shape(tensor)
            if old != shape:
                if math.prod(old) != math.prod(shape) or len(old) == len(shape):
                    raise UserError(
                        f"--weights: {key} changes shape {list(old)} -> {list(shape)} under {steps};"
                        " trained weights cannot be carried through it"
                    )
                tensor = tensor.reshape(shape)  # linear (units, C) -> 1x1 conv (units, C, 1, 1)
            out[key] = tensor
        if f"{layer}.{TRACKED}" in state and "running_mean" in entries:
            out[f"{layer}.{TRACKED}"] = state[f"{layer}.{TRACKED}"]
    return out


# Where a training run stands (optimizer moments, schedule, RNG): meaningless for another
# network, and the optimizer's buffers would not even fit a reshaped weight. Dropped.
RESUME_STATE = ("optimizer", "scheduler", "rng", "partial")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def load_checkpoint(path: str):
    """(container or None, state_dict) from a checkpoint file; one-line errors."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a checkpoint file") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a corrupt file
        if "Unsupported global" in f"{exc} {exc.__context__}":
            raise UserError(
                f"{path}: holds Python objects other than tensors and plain data — refused"
                " (loading it would run arbitrary code)"
            ) from None
        raise UserError(f"{path}: not a readable checkpoint — truncated or corrupt ({type(exc).__name__})") from None
    if isinstance(data, dict) and "format" in data and data["format"] != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: checkpoint format {data['format']!r} — expected {CHECKPOINT_FORMAT!r}")
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        return data, _unwrapped(data["model"])
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return None, _unwrapped(data)
    raise UserError(f"{path}: expected a state_dict or a checkpoint with a 'model' state_dict")


def _unwrapped(state: dict) -> dict:
    for prefix in WRAPPER_PREFIXES:
        if state and all(str(k).startswith(prefix) for k in state):
            return {str(k)[len(prefix) :]: v for k, v in state.items()}
    return state


def remap_checkpoint(src: str, dst: str, source: ShapeReport, target: ShapeReport, steps: str) -> list[str]:
    """Read `src`, carry its weights from `source` to `target`, write `dst` atomically (in the
    form it was read). Returns the training-state keys dropped from a checkpoint."""
    import torch

    container, state = load_checkpoint(src)
    new_state = remap_state(state, source, target, steps, src)
    dropped: list[str] = []
    if container is None:
        out = new_state
    else:
        dropped = [k for k in RESUME_STATE if k in container]
        out = {k: v for k, v in container.items() if k not in dropped}
        out["model"] = new_state
        if "spec" in out or out.get("format") == CHECKPOINT_FORMAT:
            out["spec"] = to_yaml(target.graph)
            out["spec_hash"] = spec_hash(target.graph)
    atomic_write(dst, lambda f: torch.save(out, f))
    return dropped
