"""The three backward rules through ReLU (section 3.4 of "The All Convolutional Net") and the
pass that gives every ReLU of a specc-built model one of them.

The forward pass is never changed; only the signal sent down through a rectifier differs.
With `y` the rectifier's output (y > 0 exactly where its input x > 0, for ReLU and for a
leaky ReLU with slope >= 0) and `g` the signal arriving from above:

| method    | ReLU                      | leaky ReLU (slope a)                          |
|-----------|---------------------------|-----------------------------------------------|
| backprop  | g * (y > 0)               | g * (1 if y > 0 else a)                       |
| deconvnet | g * (g > 0)               | g if g > 0 else a * g                         |
| guided    | g * (y > 0) * (g > 0)     | (g * (1 if y > 0 else a)) * (g > 0)           |

Leaky choices, and why. backprop is the true derivative. The deconvnet passes the signal
through the *layer's own nonlinearity* and ignores the forward pass (Zeiler & Fergus apply
the rectifier to the reconstruction), so its leaky analogue is leaky_relu(g). guided is
"backprop, then keep only what flows down as positive signal": the backprop rule masked by
g > 0, which for slope 0 is exactly the ReLU rule.

Pooling and convolutions need no new rule: autograd's max-pool backward routes the signal to
the argmax of each window, which *are* the deconvnet's switches of the forward pass, and the
backward of a (strided) convolution or an average pool is its transposed convolution — what
all three methods prescribe.

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

METHODS = ("backprop", "deconvnet", "guided")


# -- the rules as plain functions of (g, y): shared by the autograd functions and the replay --
def relu_backward(method: str, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The signal sent below a ReLU whose output was `y` (broadcastable to `g`), for signal
    `g` from above."""
    # threshold_backward(g, y, 0) is g where y > 0, else 0: autograd's own ReLU backward, one
    # pass over memory. (torch.where(y > 0, g, 0) is several times slower on the CPU.)
    if method == "backprop":
        return _threshold_backward(g, y, 0)
    if method == "deconvnet":
        return F.relu(g)
    if method == "guided":
        return _threshold_backward(g, y, 0).relu_()
    raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")


def leaky_backward(method: str, g: torch.Tensor, y: torch.Tensor, slope: float) -> torch.Tensor:
    """The signal sent below a leaky ReLU (negative slope `slope` >= 0) whose output was `y`."""
    if method == "deconvnet":
        return F.leaky_relu(g, slope)
    derivative = _leaky_relu_backward(g, y, slope, True)  # g * (1 if y > 0 else slope)
    if method == "backprop":
        return derivative
    if method == "guided":
        return _threshold_backward(derivative, g, 0)  # kept where g > 0
    raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")


_threshold_backward = torch.ops.aten.threshold_backward
_leaky_relu_backward = torch.ops.aten.leaky_relu_backward


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


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    return method


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
            # __setattr__ stores a function (not a Module or Parameter) in __dict__.
            model.relu_rule = relu
            model.leaky_rule = leaky
            yield model
        finally:
            for name in _SEAM:
                model.__dict__.pop(name, None)
            model.__dict__.update(saved)


def backward_rules(model: nn.Module, method: str):
    """`with backward_rules(model, "deconvnet"): ...` — shorthand for `BackwardRulePass`."""
    return BackwardRulePass(method).applied(model)
