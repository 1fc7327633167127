"""The backward pass of a `SpeccModule` replayed layer by layer from its graph, batched over
many seeds after a single forward pass.

Autograd can only push stacked seeds through one forward with `is_grads_batched` (vmap), and
on the CPU its convolution backward then runs one seed at a time. Knowing the graph, the
replay runs each layer's backward once for all seeds, as one batched operation: a
transposed convolution (`conv_transpose2d`), the ReLU rule of `specc_viz.rules` against the
forward output of each seed's image (a broadcast view when all seeds share one image), the
max-pooling switches of the forward pass. It computes what autograd computes under
`BackwardRulePass` — the tests hold the two equal — and it is what `specc_explain_onnx`
writes out as ONNX nodes.

Rows: seed r belongs to image `rows[r]` of the forward batch; forward values are gathered
per row, so any mix of images and units shares one replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import torch
import torch.nn.functional as F

from specc.ir import INPUT
from specc_viz.rules import leaky_backward, relu_backward

# Layers whose backward needs a forward value: their own output (rules, softmax) or their
# input (max-pool switches).
_NEEDS_OUTPUT = {"conv", "linear", "relu", "leaky_relu", "softmax"}
_NEEDS_INPUT = {"max_pool"}


def replay_steps(model, layer: str) -> list:
    """The model's steps that `layer` depends on, in forward order."""
    order = [s.name for s in model.steps]
    if layer not in order:
        raise ValueError(f"layer '{layer}' is not computed by this model (output={model.output!r})")
    needed = nx.ancestors(model.graph.nx, layer) | {layer}
    return [s for s in model.steps if s.name in needed]


def forward_values(model, x: torch.Tensor, layer: str) -> dict[str, torch.Tensor]:
    """One forward pass up to `layer` (no autograd graph), keeping the values the replay
    reads: rectifier outputs, max-pool inputs and `layer` itself. Keys are layer names and
    `input`."""
    steps = replay_steps(model, layer)
    keep = {layer}
    for step in steps:
        if step.kind in _NEEDS_OUTPUT:
            keep.add(step.name)
        if step.kind in _NEEDS_INPUT:
            keep.update(step.inputs)
    with torch.no_grad():
        _, captured = model(x, capture=keep - {INPUT}, stop_at=layer)
    values = dict(captured)
    values[INPUT] = x
    return values


@dataclass
class Replay:
    """One backward replay: the model, its forward values (batch B), the image of each row."""

    model: object
    values: dict[str, torch.Tensor]
    rows: torch.Tensor  # (R,) long: forward-batch image of each seed
    method: str

    def value(self, name: str) -> torch.Tensor:
        """A forward value gathered per row: (R, ...); a view, not a copy, for one image."""
        return self.gather(self.values[name])

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if len(tensor) == 1:
            return tensor.expand(len(self.rows), *tensor.shape[1:])
        if len(tensor) == len(self.rows) and torch.equal(self.rows, torch.arange(len(tensor))):
            return tensor  # one seed per image, in order: the forward values as they are
        return tensor.index_select(0, self.rows)

    def module(self, name: str):
        return self.model._modules[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.model.graph.input_shape if name == INPUT else self.model.shapes[name]

    def rectify(self, step, g: torch.Tensor, activation: str, slope: float) -> torch.Tensor:
        if activation == "relu":
            return relu_backward(self.method, g, self.value(step.name))
        if activation == "leaky_relu":
            return leaky_backward(self.method, g, self.value(step.name), slope)
        return g


def replay(model, values: dict[str, torch.Tensor], layer: str, seeds: torch.Tensor, rows: torch.Tensor, method: str):
    """The signal that `seeds` (R, *shape of layer) at `layer` sends to the input under
    `method`'s rules: (R, C, H, W). `values` come from `forward_values(model, x, layer)`."""
    state = Replay(model, values, rows, method)
    grads: dict[str, torch.Tensor] = {layer: seeds}
    with torch.no_grad():
        for step in reversed(replay_steps(model, layer)):
            g = grads.pop(step.name, None)
            if g is None:
                continue  # nothing flows back through this branch
            for src, signal in zip(step.inputs, BACKWARD[step.kind](state, step, g)):
                grads[src] = signal if src not in grads else grads[src] + signal
    if INPUT not in grads:
        return torch.zeros((len(seeds), *model.graph.input_shape), dtype=seeds.dtype)
    return grads[INPUT]


# -- one backward per layer type: (replay, step, g) -> signals for step.inputs, in order ----
def _conv(r: Replay, step, g):
    op = step.op
    g = r.rectify(step, g, op.activation, op.slope)
    _, h, w = r.shape(step.inputs[0])
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel_hw(), op.stride_hw(), op.pads(), op.dilation_hw()
    # Rows/columns the strided forward never reached come back as zeros (output_padding).
    extra = (
        h - ((g.shape[2] - 1) * sh - 2 * ph + dh * (kh - 1) + 1),
        w - ((g.shape[3] - 1) * sw - 2 * pw + dw * (kw - 1) + 1),
    )
    weight = r.module(step.name).weight
    return [F.conv_transpose2d(g, weight, None, (sh, sw), (ph, pw), extra, op.groups, (dh, dw))]


def _linear(r: Replay, step, g):
    g = r.rectify(step, g, step.op.activation, step.op.slope)
    return [g @ r.module(step.name).weight]


def _relu(r: Replay, step, g):
    return [relu_backward(r.method, g, r.value(step.name))]


def _leaky_relu(r: Replay, step, g):
    return [leaky_backward(r.method, g, r.value(step.name), step.op.slope)]


def _max_pool(r: Replay, step, g):
    # The switches: where each window's maximum was in the forward pass (the same kernel as
    # the forward, so the same argmax on ties). Several windows may share a switch: add.
    src = step.inputs[0]
    pool = r.module(step.name)
    _, indices = F.max_pool2d(
        r.values[src], pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, True
    )
    indices = r.gather(indices)
    n, c, h, w = (len(g), *r.shape(src))
    out = torch.zeros((n, c, h * w), dtype=g.dtype)
    out.scatter_add_(2, indices.flatten(2), g.flatten(2))
    return [out.view(n, c, h, w)]


def _avg_pool(r: Replay, step, g):
    # Linear and independent of the input: autograd of the layer's own module on zeros gives
    # its transposed window, with PyTorch's divisor at padded and ceil-mode borders.
    probe = torch.zeros((len(g), *r.shape(step.inputs[0])), dtype=g.dtype, requires_grad=True)
    with torch.enable_grad():
        (out,) = torch.autograd.grad(r.module(step.name)(probe), probe, g)
    return [out]


def _global_avg_pool(r: Replay, step, g):
    c, h, w = r.shape(step.inputs[0])
    return [(g / (h * w))[:, :, None, None].expand(len(g), c, h, w)]


def _dropout(r: Replay, step, g):
    return [g]  # inference: the identity


def _batch_norm(r: Replay, step, g):
    bn = r.module(step.name)
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    return [g * scale.view(1, -1, *([1] * (g.dim() - 2)))]


def _flatten(r: Replay, step, g):
    return [g.reshape(len(g), *r.shape(step.inputs[0]))]


def _softmax(r: Replay, step, g):
    y = r.value(step.name)
    return [y * (g - (g * y).sum(dim=1, keepdim=True))]


def _add(r: Replay, step, g):
    return [g] * len(step.inputs)


def _concat(r: Replay, step, g):
    return list(torch.split(g, [r.shape(s)[0] for s in step.inputs], dim=1))


BACKWARD: dict[str, Callable] = {
    "conv": _conv,
    "max_pool": _max_pool,
    "avg_pool": _avg_pool,
    "global_avg_pool": _global_avg_pool,
    "dropout": _dropout,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "batch_norm": _batch_norm,
    "flatten": _flatten,
    "linear": _linear,
    "softmax": _softmax,
    "add": _add,
    "concat": _concat,
}
