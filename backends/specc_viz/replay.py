"""The backward pass of a `SpeccModule` replayed step by step from its graph, batched over
many seeds after a single forward pass: the torch engine of `specc.backward`.

Autograd can only push stacked seeds through one forward with `is_grads_batched` (vmap), and
on the CPU its convolution backward then runs one seed at a time. Knowing the graph, the
replay runs each step's backward once for all seeds, as one batched operation: a transposed
convolution (`conv_transpose2d`), the rectifier rule against the forward output of each
seed's image (a broadcast view when all seeds share one image), the max-pooling switches of
the forward pass. The backward of every layer type is defined once, in `specc.backward`, and
run here by `TorchGrad` (tensors) as `specc_explain_onnx` runs it with ONNX nodes; the tests
hold the replay equal to autograd under `BackwardRulePass`.

Rows: seed r belongs to image `rows[r]` of the forward batch; forward values are gathered
per row, so any mix of images and units shares one replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import torch
import torch.nn.functional as F

from specc.backward import run_backward, values_read
from specc.ir import INPUT
from specc.lowering import Step
from specc.ops_pooling import padded_windows

_threshold_backward = torch.ops.aten.threshold_backward
_leaky_relu_backward = torch.ops.aten.leaky_relu_backward
_RELATIONS = {">": torch.gt, ">=": torch.ge, "<": torch.lt, "<=": torch.le}


class TorchOps:
    """The rectifier operations of `specc.backward` on tensors (also used by the autograd rules)."""

    def relu(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)

    def leaky_relu(self, x: torch.Tensor, slope: float) -> torch.Tensor:
        return F.leaky_relu(x, slope)

    def threshold(self, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # autograd's own ReLU backward kernel: g where y > 0, else 0, in one pass over memory
        # (torch.where(y > 0, g, 0) is several times slower on the CPU).
        return _threshold_backward(g, y, 0)

    def leaky_derivative(self, g: torch.Tensor, y: torch.Tensor, slope: float) -> torch.Tensor:
        return _leaky_relu_backward(g, y, slope, True)


TORCH_OPS = TorchOps()


def replay_steps(model, layer: str) -> list:
    """The model's steps that `layer` depends on, in forward order."""
    order = [s.name for s in model.steps]
    if layer not in order:
        raise ValueError(f"layer '{layer}' is not computed by this model (output={model.output!r})")
    needed = nx.ancestors(model.graph.nx, layer) | {layer}
    return [s for s in model.steps if s.layer in needed]


def forward_values(model, x: torch.Tensor, layer: str) -> dict[str, torch.Tensor]:
    """One forward pass up to `layer` (no autograd graph), keeping the values the replay
    reads: rectifier outputs, max-pool inputs and `layer` itself. Keys are layer names and
    `input`."""
    keep = {layer} | values_read(replay_steps(model, layer))
    with torch.no_grad():
        _, captured = model(x, capture=keep - {INPUT}, stop_at=layer)
    values = dict(captured)
    values[INPUT] = x
    return values


@dataclass
class TorchGrad(TorchOps):
    """The builder `specc.backward` runs on: the model, its forward values (batch B), the
    image of each seed's row, and the method."""

    model: object
    values: dict[str, torch.Tensor]
    rows: torch.Tensor  # (R,) long: forward-batch image of each seed
    method: str

    def __post_init__(self) -> None:
        self._layer_of = {s.name: s.layer for s in self.model.steps}  # type: ignore[attr-defined]

    def value(self, name: str) -> torch.Tensor:
        """A forward value gathered per row: (R, ...); a view, not a copy, for one image."""
        return self.gather(self.values[name])

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if len(tensor) == 1:
            return tensor.expand(len(self.rows), *tensor.shape[1:])
        if len(tensor) == len(self.rows) and torch.equal(self.rows, torch.arange(len(tensor))):
            return tensor  # one seed per image, in order: the forward values as they are
        return tensor.index_select(0, self.rows)

    def shape(self, name: str) -> tuple[int, ...]:
        if name == INPUT:
            return tuple(self.model.graph.input_shape)  # type: ignore[attr-defined]
        return tuple(self.model.shapes[self._layer_of[name]])  # type: ignore[attr-defined]

    def weight(self, layer: str, suffix: str) -> torch.Tensor:
        return getattr(self.model._modules[layer], suffix)  # type: ignore[attr-defined]

    def const(self, name: str, data: list, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.tensor(data, dtype=torch.float32).reshape(shape)

    def add(self, a, b, where: str):
        return a + b

    def sub(self, a, b, where: str):
        return a - b

    def mul(self, a, b, where: str):
        return a * b

    def div(self, a, b, where: str):
        return a / b

    def scale(self, x, factor: float, where: str):
        return x * factor

    def rsqrt(self, x, eps: float, where: str):
        return torch.rsqrt(x + eps)

    def per_channel(self, x, rank: int, where: str):
        return x.view(1, -1, *([1] * (rank - 1)))

    def sum_channels(self, x, where: str):
        return x.sum(dim=1, keepdim=True)

    def matmul(self, g, w, where: str):
        return g @ w

    def conv_transpose(self, g, w, *, stride, pads, output_padding, groups, dilation, where: str):
        top, left, bottom, right = pads
        padding = (min(top, bottom), min(left, right))
        out = F.conv_transpose2d(g, w, None, stride, padding, output_padding, groups, dilation)
        # ONNX's asymmetric pads: cut what is left of the larger side.
        cut_h, cut_w = bottom - padding[0], right - padding[1]
        cut_top, cut_left = top - padding[0], left - padding[1]
        if cut_h or cut_w or cut_top or cut_left:
            out = out[:, :, cut_top : out.shape[2] - cut_h, cut_left : out.shape[3] - cut_w]
        return out

    def unpool_max(self, step: Step, g):
        # The switches: where each window's maximum was in the forward pass (the same kernel as
        # the forward, so the same argmax on ties). Several windows may share a switch: add.
        src = step.inputs[0]
        pool = self.model._modules[step.layer]  # type: ignore[attr-defined]
        _, indices = F.max_pool2d(
            self.values[src], pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, True
        )
        indices = self.gather(indices)
        n, c, h, w = (len(g), *self.shape(src))
        out = torch.zeros((n, c, h * w), dtype=g.dtype)
        out.scatter_add_(2, indices.flatten(2), g.flatten(2))
        return out.view(n, c, h, w)

    def expand_hw(self, g, shape, where: str):
        c, h, w = shape
        return g[:, :, None, None].expand(len(g), c, h, w)

    def reshape(self, g, shape, where: str):
        return g.reshape(len(g), *shape)

    def split_channels(self, g, sizes: Sequence[int], where: str):
        return list(torch.split(g, list(sizes), dim=1))

    # -- generic primitives (added with the pooling and normalisation families) ------------
    def reduce_mean(self, x, axes: Sequence[int], where: str):
        return x.mean(dim=tuple(axes), keepdim=True)

    def reduce_sum(self, x, axes: Sequence[int], where: str):
        return x.sum(dim=tuple(axes), keepdim=True)

    def pow(self, x, exponent: float, where: str):
        return x.pow(exponent)

    def sign(self, x, where: str):
        return torch.sign(x)

    def unpool_windows(self, g, source: str, windows, where: str, magnitude: bool = False):
        # The switches come from the forward batch (one row per image), then go to the seeds'
        # rows, as for max pooling; argmax returns the first maximum, as the pooling kernels do.
        forward = self.values[source]  # (B, C, *map)
        x = forward.flatten(2).abs() if magnitude else forward.flatten(2)  # (B, C, N positions)
        table = torch.tensor(padded_windows([list(w) for w in windows]), device=x.device)  # (P, K)
        first = x[:, :, table].argmax(dim=3)  # (B, C, P): the switch's place in its window
        cells, width = table.shape
        switches = table.flatten()[first + torch.arange(cells, device=x.device) * width]
        switches = self.gather(switches)  # (R, C, P)
        out = torch.zeros((len(g), *x.shape[1:]), dtype=g.dtype, device=g.device)
        out.scatter_add_(2, switches, g.reshape(len(g), x.shape[1], cells))
        return out.view(len(g), *forward.shape[1:])

    # -- generic primitives (added with the activation family) ------------------------------
    def exp(self, x, where: str):
        return torch.exp(x)

    def tanh(self, x, where: str):
        return torch.tanh(x)

    def sigmoid(self, x, where: str):
        return torch.sigmoid(x)

    def erf(self, x, where: str):
        return torch.erf(x)

    def softplus(self, x, where: str):
        return F.softplus(x)

    def affine(self, x, scale: float, shift: float, where: str):
        return x * scale + shift

    def compare(self, x, relation: str, value: float, where: str):
        return _RELATIONS[relation](x, value)

    def select(self, mask, a, b, where: str):
        return torch.where(mask, a, b)

    def clip_mask(self, g, x, low: float, high: float, where: str):
        return torch.where((x > low) & (x < high), g, 0.0)

    # -- generic primitives (added with the structure family) -------------------------------
    def conv(self, x, w, *, stride, pads, groups, dilation, where: str):
        top, left, bottom, right = pads
        if (top, left) != (bottom, right):  # asymmetric: pad first, as ONNX's Conv does
            x, top, left = F.pad(x, (left, right, top, bottom)), 0, 0
        return F.conv2d(x, w, None, stride, (top, left), dilation, groups)

    def slice_axes(self, x, axes: Sequence[int], starts: Sequence[int], ends: Sequence[int], where: str):
        for axis, start, end in zip(axes, starts, ends):
            x = x.narrow(axis, start, end - start)
        return x


def replay(model, values: dict[str, torch.Tensor], layer: str, seeds: torch.Tensor, rows: torch.Tensor, method: str):
    """The signal that `seeds` (R, *shape of layer) at `layer` sends to the input under
    `method`'s rules: (R, C, H, W). `values` come from `forward_values(model, x, layer)`."""
    builder = TorchGrad(model, values, rows, method)
    with torch.no_grad():
        out = run_backward(builder, replay_steps(model, layer), layer, seeds)
    if out is None:
        return torch.zeros((len(seeds), *model.graph.input_shape), dtype=seeds.dtype)
    return out
