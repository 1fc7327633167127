"""The PyTorch entries of the structure ops (`specc.ops_structure`), merged into
`specc_torch.table.TORCH_OPS`.

`run` and `code` call the same torch functions with the same arguments, so the generated
file computes the same bits. Two layers need a piece of code torch does not have, kept here
as plain torch and copied verbatim into generated files: `LayerScale`, the module of `scale`
(`<layer>.weight`, shape (C,)), and `broadcast_mul`, the product of `mul`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from specc.ops import Shape
from specc_torch.tablebase import ModuleSpec, TorchOp, code_module, no_module, run_module, square


class LayerScale(nn.Module):
    """A learned multiplier per channel (or feature): x * weight along axis 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.reshape(-1, *([1] * (x.dim() - 2)))


def broadcast_mul(*xs: torch.Tensor) -> torch.Tensor:
    """The product of `xs`, left to right; a flat (B, C) gate beside (B, C, H, W) maps is read
    as (B, C, 1, 1), so that it scales each channel."""
    rank = max(x.dim() for x in xs)
    shaped = [x.reshape(*x.shape, *([1] * (rank - x.dim()))) for x in xs]
    out = shaped[0]
    for x in shaped[1:]:
        out = out * x
    return out


def _conv_transpose_module(op, ins: list[Shape]) -> ModuleSpec:
    kwargs: dict = {"kernel_size": square(op.kernel_hw())}
    if op.stride_hw() != (1, 1):
        kwargs["stride"] = square(op.stride_hw())
    if op.padding_hw() != (0, 0):
        kwargs["padding"] = square(op.padding_hw())
    if op.output_padding_hw() != (0, 0):
        kwargs["output_padding"] = square(op.output_padding_hw())
    if op.groups != 1:
        kwargs["groups"] = op.groups
    if not op.bias:
        kwargs["bias"] = False
    if op.dilation_hw() != (1, 1):
        kwargs["dilation"] = square(op.dilation_hw())
    return ModuleSpec("ConvTranspose2d", (ins[0][0], op.filters), kwargs)


def _scale_module(op, ins: list[Shape]) -> ModuleSpec:
    return ModuleSpec("LayerScale", (ins[0][0],), helper=LayerScale)


def _arguments(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


# -- upsample: F.interpolate with the spec's scale or size ---------------------------------
def _interpolate_kwargs(op) -> dict:
    # The spec's own scale (an integer factor) or size, as given: the same coordinates either
    # way (PyTorch reads a factor s as 1/s = in/out), and no shapes needed in the code.
    target = {"scale_factor": op.scale} if op.scale is not None else {"size": op.size}
    target = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in target.items()}
    corners = {"align_corners": op.align_corners} if op.mode == "bilinear" else {}
    return {**target, "mode": op.mode, **corners}


def _run_upsample(model, step, xs):
    return F.interpolate(xs[0], **_interpolate_kwargs(step.op))


def _code_upsample(step, args):
    return f"F.interpolate({args[0]}, {_arguments(_interpolate_kwargs(step.op))})"


# -- pad: F.pad takes (left, right, top, bottom) -------------------------------------------
def _pad_args(op) -> tuple[tuple[int, int, int, int], dict]:
    top, bottom, left, right = op.sides()
    if op.mode == "constant":
        return (left, right, top, bottom), ({"value": op.value} if op.value else {})
    return (left, right, top, bottom), {"mode": op.mode}


def _run_pad(model, step, xs):
    sides, kwargs = _pad_args(step.op)
    return F.pad(xs[0], sides, **kwargs)


def _code_pad(step, args):
    sides, kwargs = _pad_args(step.op)
    return f"F.pad({args[0]}, {sides!r}{', ' if kwargs else ''}{_arguments(kwargs)})"


# -- the functional layers -------------------------------------------------------------------
def _run_identity(model, step, xs):
    return xs[0]


def _run_mul(model, step, xs):
    return broadcast_mul(*xs)


def _pieces(step) -> int:
    return step.op.pieces


def _run_maxout(model, step, xs):
    return xs[0].unflatten(1, (-1, _pieces(step))).amax(dim=2)


def _run_log_softmax(model, step, xs):
    return torch.log_softmax(xs[0], dim=1)


TORCH_OPS: dict[str, TorchOp] = {
    "conv_transpose": TorchOp(_conv_transpose_module, run_module, code_module),
    "upsample": TorchOp(no_module, _run_upsample, _code_upsample),
    "pad": TorchOp(no_module, _run_pad, _code_pad),
    "identity": TorchOp(no_module, _run_identity, lambda step, a: a[0]),
    "mul": TorchOp(no_module, _run_mul, lambda step, a: f"broadcast_mul({', '.join(a)})", helpers=(broadcast_mul,)),
    "scale": TorchOp(_scale_module, run_module, code_module),
    "maxout": TorchOp(
        no_module, _run_maxout, lambda step, a: f"{a[0]}.unflatten(1, (-1, {_pieces(step)})).amax(dim=2)"
    ),
    "log_softmax": TorchOp(no_module, _run_log_softmax, lambda step, a: f"torch.log_softmax({a[0]}, dim=1)"),
}
