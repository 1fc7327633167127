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
"spec" updated. Reading and writing is `specc.checkpoint_io`'s, which imports torch only
when a checkpoint is read or written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from specc.checkpoint_io import CHECKPOINT_FORMAT, read_state_dict, save_checkpoint
from specc.emit import spec_hash, to_yaml
from specc.errors import UserError
from specc.shapes import ShapeReport

TRACKED = "num_batches_tracked"  # torch's batch_norm counter: carried when present, never required


def weight_shapes(report: ShapeReport) -> dict[str, dict[str, tuple[int, ...]]]:
    """Per layer with state, its state_dict entries (`weight`, `bias`, ...) and their shapes,
    as the op table declares them (`LayerOp.weights`); layers without state are absent."""
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for node in report.graph.nodes:
        entries = node.op.weights([report.shapes[s] for s in node.inputs])
        if entries:
            out[node.name] = entries
    return out


def _tracks_batches(report: ShapeReport, layer: str) -> bool:
    """Whether torch keeps a `num_batches_tracked` counter beside the layer's statistics."""
    return bool(report.graph.node(layer).op.buffers)


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
        if suffix not in expected.get(layer, {}) and not (
            suffix == TRACKED and layer in expected and _tracks_batches(report, layer)
        ):
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
        if f"{layer}.{TRACKED}" in state and _tracks_batches(target, layer):
            out[f"{layer}.{TRACKED}"] = state[f"{layer}.{TRACKED}"]
    return out


# Where a training run stands (optimizer moments, schedule, RNG): meaningless for another
# network, and the optimizer's buffers would not even fit a reshaped weight. Dropped.
RESUME_STATE = ("optimizer", "scheduler", "rng", "partial")


def remap_checkpoint(src: str, dst: str, source: ShapeReport, target: ShapeReport, steps: str) -> list[str]:
    """Read `src`, carry its weights from `source` to `target`, write `dst` atomically (in the
    form it was read). Returns the training-state keys dropped from a checkpoint."""
    container, state = read_state_dict(src)
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
    save_checkpoint(dst, out)
    return dropped
