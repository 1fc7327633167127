"""The pieces every entry of the PyTorch op table is made of: `ModuleSpec` (a torch.nn
constructor call, instantiated by `specc_torch.build` and printed by the code generator),
`TorchOp` (module, run, code), the default ReLU rules of the seam and the entry functions
shared by layers that are just their submodule. The table itself is `specc_torch.table`
(the paper's layer types) merged with the family tables `specc_torch/table_*.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from specc.lowering import Step
from specc.ops import LayerOp, Shape


@dataclass(frozen=True)
class ModuleSpec:
    """A torch.nn constructor call: `nn.<cls>(*args, **kwargs)`; kwargs hold non-defaults only.

    Where torch.nn has no module for a layer, `helper` is a small nn.Module class of specc's
    own (named `cls`, using nothing but torch): it is called instead (`<cls>(...)`), and the
    code generator copies its source into the generated file, so both still agree."""

    cls: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    helper: type[nn.Module] | None = None

    def make(self) -> nn.Module:
        factory = getattr(nn, self.cls) if self.helper is None else self.helper
        return factory(*self.args, **self.kwargs)

    def source(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{'nn.' if self.helper is None else ''}{self.cls}({', '.join(parts)})"


@dataclass(frozen=True)
class TorchOp:
    # (op, input shapes) -> the layer's submodule, or None for a purely functional layer
    module: Callable[[LayerOp, list[Shape]], ModuleSpec | None]
    # (model, step, input tensors in the step's `inputs` order) -> output; the layer's
    # submodule is `model._modules[step.layer]`
    run: Callable[[nn.Module, Step, list[torch.Tensor]], torch.Tensor]
    # (step, input expressions) -> output expression; `self` is the generated module
    code: Callable[[Step, list[str]], str]
    # functions of specc's own (torch only) that `code` calls by name; the code generator
    # copies their source into the generated file
    helpers: tuple[Callable, ...] = ()
    # `run` returns a new tensor that its backward never reads, so the step that reads it last
    # may overwrite it in place (a ReLU after a conv or a batch_norm, a residual add), as
    # hand-written networks do with `inplace=True`
    fresh_output: bool = False


def square(pair: tuple[int, int]) -> int | tuple[int, int]:
    """(3, 3) -> 3: square windows read as one number in the generated code."""
    return pair[0] if pair[0] == pair[1] else pair


def no_module(op: LayerOp, ins: list[Shape]) -> None:
    return None


# -- activations: the one seam every ReLU goes through ------------------------------------
def default_relu_rule(x: torch.Tensor) -> torch.Tensor:
    """The ReLU every ReLU site calls unless the rule is swapped."""
    return F.relu(x)


def default_leaky_rule(x: torch.Tensor, slope: float) -> torch.Tensor:
    """The leaky ReLU every leaky_relu site calls unless the rule is swapped."""
    return F.leaky_relu(x, slope)


# -- layers that own a submodule ----------------------------------------------------------
def run_module(model: nn.Module, step: Step, xs: list[torch.Tensor]) -> torch.Tensor:
    module = model._modules[step.layer]
    assert module is not None, f"layer {step.layer} has a submodule"  # `_modules` may hold None in general
    return module(xs[0])


def code_module(step: Step, args: list[str]) -> str:
    return f"self.{step.layer}({args[0]})"
