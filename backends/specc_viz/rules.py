"""The backward rules through ReLU (section 3.4 of "The All Convolutional Net") as autograd
functions, and the pass that gives every ReLU of a specc-built model one of them.

The forward pass is never changed; only the signal sent down through a rectifier differs.
The rules themselves — backprop, deconvnet, guided, for ReLU and leaky ReLU, and why the
leaky ones are what they are — are defined once in `specc.backward` and shared with the
replay engine and the ONNX explain models.

The pass swaps the functions the model calls at its ReLU seam (`relu_rule`, `leaky_rule`),
which every ReLU site goes through — fused conv/linear activations, standalone relu layers,
reused and in-place ones, and the generated standalone code — so none can be missed, unlike
module hooks on `nn.ReLU`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from specc.backward import METHODS, check_method, leaky_rule, relu_rule
from specc_viz.replay import TORCH_OPS


# -- the rules as plain functions of (g, y): shared by the autograd functions and the replay --
def relu_backward(method: str, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The signal sent below a ReLU whose output was `y` (broadcastable to `g`), for signal
    `g` from above (`specc.backward.relu_rule` on tensors)."""
    return relu_rule(TORCH_OPS, method, g, y)


def leaky_backward(method: str, g: torch.Tensor, y: torch.Tensor, slope: float) -> torch.Tensor:
    """The signal sent below a leaky ReLU (negative slope `slope` >= 0) whose output was `y`."""
    return leaky_rule(TORCH_OPS, method, g, y, slope)


# -- autograd functions: forward unchanged, backward by the rule ---------------------------
# New-style functions (forward without ctx + setup_context) so that `generate_vmap_rule`
# lets `torch.autograd.grad(..., is_grads_batched=True)` push stacked seeds through them.
def _relu_function(method: str) -> type[torch.autograd.Function]:
    def forward(x):
        return F.relu(x)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)  # y > 0 iff x > 0: the output is all the rule needs

    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return relu_backward(method, g, y)

    return _function(f"{method.capitalize()}ReLU", forward, setup_context, backward)


def _leaky_function(method: str) -> type[torch.autograd.Function]:
    def forward(x, slope):
        return F.leaky_relu(x, slope)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)  # slope >= 0 (the spec guarantees it): y > 0 iff x > 0
        ctx.slope = inputs[1]

    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return leaky_backward(method, g, y, ctx.slope), None

    return _function(f"{method.capitalize()}LeakyReLU", forward, setup_context, backward)


def _function(name: str, forward, setup_context, backward) -> type[torch.autograd.Function]:
    # Made with type() so that autograd names the backward node after the rule
    # (`GuidedReLUBackward` in a grad_fn chain).
    namespace = {
        "generate_vmap_rule": True,
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
        "__module__": __name__,
        "__qualname__": name,
    }
    return type(name, (torch.autograd.Function,), namespace)


RELU_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {m: _relu_function(m) for m in METHODS}
LEAKY_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {m: _leaky_function(m) for m in METHODS}
BackpropReLU, DeconvnetReLU, GuidedReLU = (RELU_FUNCTIONS[m] for m in METHODS)
BackpropLeakyReLU, DeconvnetLeakyReLU, GuidedLeakyReLU = (LEAKY_FUNCTIONS[m] for m in METHODS)


def rule_functions(method: str) -> tuple[Callable, Callable]:
    """(relu(x), leaky_relu(x, slope)) callables that apply `method`'s backward rule."""
    check_method(method)
    return RELU_FUNCTIONS[method].apply, LEAKY_FUNCTIONS[method].apply


# -- the pass -------------------------------------------------------------------------------
_SEAM = ("relu_rule", "leaky_rule")


def has_seam(model: nn.Module) -> bool:
    """Whether `model` routes its ReLUs through `relu_rule`/`leaky_rule` (specc-built models,
    `SpeccModule` and the generated standalone classes, do)."""
    return all(callable(getattr(model, name, None)) for name in _SEAM)


@dataclass(frozen=True)
class BackwardRulePass:
    """Give every ReLU and leaky ReLU of a specc-built model `method`'s backward rule.

        with BackwardRulePass("guided").applied(model):
            ...  # forward values unchanged; gradients follow the guided rule

    The model is restored exactly on exit, also on error: the instance attributes of the seam
    are put back as they were (none for a fresh model), so the class's default `F.relu` rule
    is what training sees. Parameters, buffers and train/eval state are not touched."""

    method: str = "guided"

    def __post_init__(self):
        check_method(self.method)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        if not has_seam(model):
            raise TypeError(
                f"{type(model).__name__} has no ReLU seam (relu_rule/leaky_rule): build it with"
                " specc_torch.build or specc_torch.codegen — module hooks would miss functional ReLUs"
            )
        relu, leaky = rule_functions(self.method)
        saved = {name: model.__dict__[name] for name in _SEAM if name in model.__dict__}
        try:
            # Plain instance attributes shadow the class's staticmethods; nn.Module's
            # __setattr__ stores a function (not a Module or Parameter) in __dict__. (torch
            # annotates that `value` as `Tensor | Module` only, hence the two ignores.)
            model.relu_rule = relu  # pyright: ignore[reportArgumentType]
            model.leaky_rule = leaky  # pyright: ignore[reportArgumentType]
            yield model
        finally:
            for name in _SEAM:
                model.__dict__.pop(name, None)
            model.__dict__.update(saved)


def backward_rules(model: nn.Module, method: str):
    """`with backward_rules(model, "deconvnet"): ...` — shorthand for `BackwardRulePass`."""
    return BackwardRulePass(method).applied(model)
