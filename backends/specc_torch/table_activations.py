"""The PyTorch entries of the activation family (`specc.ops_activations`): each one functional
torch call, with the op's parameters as keyword arguments where they differ from the defaults
(which are PyTorch's): `F.elu(x, alpha=0.5)`. `run` calls the function that `code` prints, with
the same arguments, so the generated file computes the same bits. No submodule: the layers
have no state, and a fused activation is a step of its own after lowering (`specc.lowering`).

Unlike relu/leaky_relu, these do not go through the model's ReLU rule seam: every
explanation method passes their plain gradient (`specc.backward_activations`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from specc.ops import LayerOp
from specc_torch.tablebase import TorchOp, no_module

_NAMESPACES = {"torch": torch, "F": F}  # the names the generated file imports torch under


def _changed_params(op: LayerOp) -> dict:
    """The op's parameters that differ from its defaults, in declaration order."""
    fields = type(op).model_fields
    return {k: v for k, v in op.params().items() if k != "type" and v != fields[k].default}


def functional(path: str) -> TorchOp:
    """An entry that calls `path` (`F.elu`, `torch.sigmoid`) on the input, with the op's
    non-default parameters as keyword arguments of the same names."""
    namespace, name = path.split(".")
    function: Callable[..., torch.Tensor] = getattr(_NAMESPACES[namespace], name)

    def run(model, step, xs: list[torch.Tensor]) -> torch.Tensor:
        return function(xs[0], **_changed_params(step.op))

    def code(step, args: list[str]) -> str:
        kwargs = "".join(f", {k}={v!r}" for k, v in _changed_params(step.op).items())
        return f"{path}({args[0]}{kwargs})"

    return TorchOp(no_module, run, code)


TORCH_OPS: dict[str, TorchOp] = {
    "sigmoid": functional("torch.sigmoid"),
    "tanh": functional("torch.tanh"),
    "relu6": functional("F.relu6"),
    "hardtanh": functional("F.hardtanh"),
    "elu": functional("F.elu"),
    "selu": functional("F.selu"),
    "gelu": functional("F.gelu"),
    "silu": functional("F.silu"),
    "mish": functional("F.mish"),
    "hardswish": functional("F.hardswish"),
    "hardsigmoid": functional("F.hardsigmoid"),
    "softplus": functional("F.softplus"),
}
