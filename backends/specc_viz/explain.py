"""`explain`: the reconstruction (deconvnet), saliency (backprop) or guided-backprop map of
units of one layer, for a batch of images, in batched backward passes.

Two engines compute the same maps (the tests hold them equal):
- "replay" (SpeccModule only; the default for it): one forward pass per image batch keeps
  the forward masks and switches, then `specc_viz.replay` runs each layer's backward once
  for a whole stack of seeds (R = images x units rows).
- "autograd": the forward runs under `BackwardRulePass`, so every ReLU has the method's
  rule, and `torch.autograd.grad(..., is_grads_batched=True)` pushes the seeds of all units
  through the one forward graph. It works on any model with the ReLU seam, the generated
  standalone classes included (those have no named intermediate outputs: logits only).

Measured on ALL-CNN-C, 64 channels of conv6 for one image, CPU time with one thread: a loop
of 64 single-unit calls 1.21 s; the input repeated 64 times through one forward and backward
1.03 s; autograd with stacked seeds 0.58 s; the replay 0.59 s. One thread hides the
difference between the last two: vmap runs autograd's convolution backward one seed at a
time, while the replay's transposed convolutions are real batch-64 convolutions, which is
what a second thread (or core) can share (2 threads: replay 1.4 s, autograd 4.4 s on a
loaded machine). The replay also takes any mix of (image, unit) rows, as the top-k search needs.

Either way the model is left as found: train/eval flags, `requires_grad` of every parameter,
the ReLU rules; no parameter gradient is accumulated and no BN statistic moves.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeGuard

import torch
from torch import nn

from specc_viz.replay import forward_values, replay
from specc_viz.rules import backward_rules, check_method
from specc_viz.units import Channel, Position, Unit, as_unit, check_unit, make_seeds, resolve_seed

if TYPE_CHECKING:
    from specc_torch.module import SpeccModule

ENGINES = ("auto", "replay", "autograd")
DEFAULT_MAX_ROWS = 128  # seeds per backward pass: bounds memory (rows x the widest layer)
DEFAULT_BATCH = 64  # images per forward pass


def is_specc_module(model: nn.Module) -> TypeGuard[SpeccModule]:
    """A SpeccModule, told by its attributes (nothing here imports specc_torch at run time)."""
    return all(hasattr(model, a) for a in ("graph", "steps", "shapes", "output_name"))


@contextmanager
def inference_state(model: nn.Module, *, freeze: bool = False) -> Iterator[nn.Module]:
    """Eval mode (dropout off, BN on running statistics) and, with `freeze`, no parameter
    requiring grad; every module's flag and every parameter's `requires_grad` are put back
    as they were on exit, also on error."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        if freeze:
            for p, _ in flags:
                p.requires_grad_(False)
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def resolve_layer(model: nn.Module, layer: str | None) -> str | None:
    """The layer name to start from (None on a model without names means its output)."""
    if is_specc_module(model):
        return model.output_name if layer is None else layer
    if layer is not None:
        raise ValueError(f"layer={layer!r}: {type(model).__name__} has no named layers — only its output (layer=None)")
    return None


def layer_shape(model: nn.Module, layer: str | None, inputs: torch.Tensor) -> tuple[int, ...]:
    if layer is not None:
        assert is_specc_module(model), "resolve_layer gives a layer name on a SpeccModule only"
        if layer not in model.shapes:
            raise ValueError(f"no layer '{layer}' in spec '{model.graph.name}'")
        return tuple(model.shapes[layer])
    with torch.no_grad(), inference_state(model):
        return tuple(model(inputs[:1]).shape[1:])


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    layer: str | None = None,
    units=None,
    method: str = "guided",
    seed: str = "auto",
    engine: str = "auto",
    max_rows: int = DEFAULT_MAX_ROWS,
    batch_size: int = DEFAULT_BATCH,
) -> torch.Tensor:
    """Maps (B, U, C, H, W) of `units` of `layer` for `inputs` (B, C, H, W), by `method`
    ("guided", "deconvnet" or "backprop").

    `layer` None means the logits, where a unit is a class. `units`: a list of `Channel`,
    `Position`, ints (channels or classes), (c, y, x) tuples or "C" / "C,Y,X" strings; a
    single unit instead of a list gives (B, C, H, W). `seed`: "activation" (the paper: the
    unit keeps its activation, all other activations of the layer are zero), "one" (1 on the
    unit: the gradient of its value) or "auto" (one for a class, activation for a channel).
    `engine`: see the module docstring; `max_rows` seeds per backward pass and `batch_size`
    images per forward pass bound the memory."""
    check_method(method)
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if inputs.dim() != 4:
        raise ValueError(f"inputs must be (B, C, H, W), got shape {tuple(inputs.shape)}")
    if units is None:
        raise ValueError("units: give the channels, positions or classes to start from")
    single = not isinstance(units, list)  # a list is many units; (c, y, x) is one position
    unit_list = [as_unit(units)] if single else [as_unit(u) for u in units]
    if not unit_list:
        raise ValueError("units: the list is empty")
    layer = resolve_layer(model, layer)
    seed = resolve_seed(seed, layer is None or layer == getattr(model, "output_name", None))
    shape = layer_shape(model, layer, inputs)
    for unit in unit_list:
        check_unit(unit, shape, layer or "output")
    if engine == "auto":
        engine = "replay" if is_specc_module(model) else "autograd"
    if engine == "replay" and not is_specc_module(model):
        raise ValueError(f"engine='replay' needs a SpeccModule (specc_torch.build), not {type(model).__name__}")

    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        if engine == "replay":
            assert layer is not None, "resolve_layer names the output layer of a SpeccModule"
            rows = [(b, u) for b in range(len(batch)) for u in unit_list]
            maps = explain_rows(model, batch, layer, rows, method, seed=seed, max_rows=max_rows)
            outputs.append(maps.view(len(batch), len(unit_list), *maps.shape[1:]))
        else:
            outputs.append(_autograd(model, batch, layer, unit_list, method, seed, max_rows))
    result = torch.cat(outputs)
    return result[:, 0] if single else result


def explain_rows(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    rows: Sequence[tuple[int, Unit]],
    method: str,
    *,
    seed: str = "auto",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> torch.Tensor:
    """Maps (len(rows), C, H, W), one per (image index into `inputs`, unit) pair, from one
    forward pass over `inputs` and replayed backward passes of up to `max_rows` seeds. Any
    mix works: the top-k search pairs each unit with its own images."""
    return explain_rows_by_method(model, inputs, layer, rows, [method], seed=seed, max_rows=max_rows)[method]


def explain_rows_by_method(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    rows: Sequence[tuple[int, Unit]],
    methods: Sequence[str],
    *,
    seed: str = "auto",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, torch.Tensor]:
    """`explain_rows` for several methods from the same single forward pass."""
    for method in methods:
        check_method(method)
    seed = resolve_seed(seed, layer == model.output_name)
    if not rows:
        raise ValueError("rows: no (image, unit) pair to explain")
    with inference_state(model):
        values = forward_values(model, inputs, layer)
        activation = values[layer]
        out: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
        for start in range(0, len(rows), max_rows):
            chunk = rows[start : start + max_rows]
            index = torch.tensor([b for b, _ in chunk], dtype=torch.long)
            seeds = make_seeds(activation, [u for _, u in chunk], index, seed)
            for method in methods:
                out[method].append(replay(model, values, layer, seeds, index, method))
    return {m: torch.cat(maps) for m, maps in out.items()}


def _autograd(model, batch, layer, units: list[Unit], method, seed, max_rows) -> torch.Tensor:
    """(B, U, C, H, W) by autograd under the rule pass: one forward, the units' seeds
    stacked (U, B, ...) through `is_grads_batched`."""
    per_pass = max(1, max_rows // len(batch))
    with inference_state(model, freeze=True), backward_rules(model, method):
        x = batch.detach().clone().requires_grad_(True)
        a = model(x) if layer is None else model(x, stop_at=layer)[0]
        images = torch.arange(len(batch))
        chunks = []
        for start in range(0, len(units), per_pass):
            group = units[start : start + per_pass]
            seeds = torch.stack([make_seeds(a, [u] * len(batch), images, seed) for u in group])  # (U, B, ...)
            retain = start + per_pass < len(units)
            if len(group) == 1:
                (grad,) = torch.autograd.grad(a, x, seeds[0], retain_graph=retain)
                grad = grad[None]
            else:
                (grad,) = torch.autograd.grad(a, x, seeds, retain_graph=retain, is_grads_batched=True)
            chunks.append(grad.transpose(0, 1))
    return torch.cat(chunks, dim=1).detach()


__all__ = ["Channel", "ENGINES", "Position", "explain", "explain_rows", "explain_rows_by_method", "inference_state"]
