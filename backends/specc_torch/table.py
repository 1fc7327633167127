"""The PyTorch op table: one entry per layer type of `specc.ops.OPS`.

Each entry says, once, how a layer becomes PyTorch:
- `module`: the submodule the layer owns (parameters, running statistics, or a training-only
  behaviour such as dropout), as a `ModuleSpec` — a torch.nn class name plus its arguments. The
  same spec is instantiated by `specc_torch.build` and printed by the code generator, so both
  have the same submodules by construction.
- `run`: the forward computation inside a `SpeccModule`.
- `code`: the same computation as a Python expression for the generated standalone file.

`run` and `code` must call the same torch functions in the same order: the generated file is
tested to give bit-identical outputs. The table works on lowered steps (`specc.lowering`): a
conv/linear layer's fused activation is a `relu`/`leaky_relu` step of its own, so every ReLU
site goes through the model's `relu_rule`/`leaky_rule` and a visualization can swap the
backward rule of all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specc.lowering import Step
from specc.ops import LeakyReLU, Shape
from specc_torch.table_activations import TORCH_OPS as ACTIVATION_TORCH_OPS
from specc_torch.table_norm import TORCH_OPS as NORM_TORCH_OPS
from specc_torch.table_pooling import TORCH_OPS as POOLING_TORCH_OPS
from specc_torch.table_structure import TORCH_OPS as STRUCTURE_TORCH_OPS
from specc_torch.tablebase import (  # noqa: F401 - re-exported
    ModuleSpec,
    TorchOp,
    code_module,
    default_leaky_rule,
    default_relu_rule,
    no_module,
    run_module,
    square,
)


def _conv_module(op, ins: list[Shape]) -> ModuleSpec:
    kwargs: dict = {"kernel_size": square(op.kernel_hw())}
    if op.stride_hw() != (1, 1):
        kwargs["stride"] = square(op.stride_hw())
    if op.pads() != (0, 0):
        kwargs["padding"] = square(op.pads())
    if op.dilation_hw() != (1, 1):
        kwargs["dilation"] = square(op.dilation_hw())
    if op.groups != 1:
        kwargs["groups"] = op.groups
    if not op.bias:
        kwargs["bias"] = False
    return ModuleSpec("Conv2d", (ins[0][0], op.filters), kwargs)


def _pool_kwargs(op) -> dict:
    kwargs: dict = {"kernel_size": square(op.kernel_hw())}
    if op.stride_hw() != op.kernel_hw():
        kwargs["stride"] = square(op.stride_hw())
    if op.pads() != (0, 0):
        kwargs["padding"] = square(op.pads())
    if op.ceil_mode:
        kwargs["ceil_mode"] = True
    return kwargs


def _max_pool_module(op, ins: list[Shape]) -> ModuleSpec:
    return ModuleSpec("MaxPool2d", (), _pool_kwargs(op))


def _avg_pool_module(op, ins: list[Shape]) -> ModuleSpec:
    # PyTorch counts padded zeros by default; the spec's default excludes them, so always say.
    return ModuleSpec("AvgPool2d", (), {**_pool_kwargs(op), "count_include_pad": op.count_include_pad})


def _dropout_module(op, ins: list[Shape]) -> ModuleSpec:
    return ModuleSpec("Dropout2d" if op.spatial else "Dropout", (), {"p": op.rate})


def _batch_norm_module(op, ins: list[Shape]) -> ModuleSpec:
    kwargs: dict = {}
    if op.eps != 1e-5:
        kwargs["eps"] = op.eps
    if op.momentum != 0.1:
        kwargs["momentum"] = op.momentum  # PyTorch's convention: running = (1 - m) * running + m * batch
    if not op.affine:
        kwargs["affine"] = False
    return ModuleSpec("BatchNorm2d" if len(ins[0]) == 3 else "BatchNorm1d", (ins[0][0],), kwargs)


def _prelu_module(op, ins: list[Shape]) -> ModuleSpec:
    return ModuleSpec("PReLU", (), {} if op.shared else {"num_parameters": ins[0][0]})


def _linear_module(op, ins: list[Shape]) -> ModuleSpec:
    return ModuleSpec("Linear", (ins[0][0], op.units), {} if op.bias else {"bias": False})


# -- functional layers --------------------------------------------------------------------
def _run_relu(model, step, xs):
    # When the plan says nothing else reads the input and its producer's backward does not
    # need it (a conv, a batch_norm, an add: `fresh_output`), and ReLU's backward needs only its
    # own result, the default rule runs in place, as `nn.ReLU(inplace=True)` does in
    # hand-written networks (same values and gradients, one large tensor less). A swapped rule
    # is always called as it is.
    rule = model.relu_rule
    return torch.relu_(xs[0]) if _inplace(step) and rule is default_relu_rule else rule(xs[0])


def _run_leaky_relu(model, step, xs):
    rule, slope = model.leaky_rule, step.op.slope
    return F.leaky_relu_(xs[0], slope) if _inplace(step) and rule is default_leaky_rule else rule(xs[0], slope)


def _code_leaky_relu(step: Step, args: list[str]) -> str:
    assert isinstance(step.op, LeakyReLU), "the leaky_relu entry gets leaky_relu steps"
    return f"self.leaky_rule({args[0]}, {step.op.slope!r})"


def _run_global_avg_pool(model, step, xs):
    return xs[0].mean(dim=(2, 3))


def _run_flatten(model, step, xs):
    return torch.flatten(xs[0], 1)


def _run_softmax(model, step, xs):
    return torch.softmax(xs[0], dim=1)


def _run_add(model, step, xs):
    out = xs[0]
    for i, x in enumerate(xs[1:]):  # left to right, as `a + b + c` in the generated code
        # The first sum may overwrite the first operand when nothing else reads it (see _run_relu);
        # later sums overwrite the partial sum, which is ours.
        out = out.add_(x) if i > 0 or _inplace(step) else out + x
    return out


def _inplace(step) -> bool:
    """Whether the forward plan lets this step overwrite its first input (`Step.inplace`)."""
    return getattr(step, "inplace", False)


def _run_concat(model, step, xs):
    return torch.cat(xs, dim=1)


TORCH_OPS: dict[str, TorchOp] = {
    "conv": TorchOp(_conv_module, run_module, code_module, fresh_output=True),
    "max_pool": TorchOp(_max_pool_module, run_module, code_module, fresh_output=True),
    "avg_pool": TorchOp(_avg_pool_module, run_module, code_module, fresh_output=True),
    "global_avg_pool": TorchOp(no_module, _run_global_avg_pool, lambda step, a: f"{a[0]}.mean(dim=(2, 3))"),
    "dropout": TorchOp(_dropout_module, run_module, code_module),
    "relu": TorchOp(no_module, _run_relu, lambda step, a: f"self.relu_rule({a[0]})"),
    "leaky_relu": TorchOp(no_module, _run_leaky_relu, _code_leaky_relu),
    "prelu": TorchOp(_prelu_module, run_module, code_module),
    "batch_norm": TorchOp(_batch_norm_module, run_module, code_module, fresh_output=True),
    "flatten": TorchOp(no_module, _run_flatten, lambda step, a: f"torch.flatten({a[0]}, 1)"),
    "linear": TorchOp(_linear_module, run_module, code_module, fresh_output=True),
    "softmax": TorchOp(no_module, _run_softmax, lambda step, a: f"torch.softmax({a[0]}, dim=1)"),
    "add": TorchOp(no_module, _run_add, lambda step, a: " + ".join(a), fresh_output=True),
    "concat": TorchOp(no_module, _run_concat, lambda step, a: f"torch.cat([{', '.join(a)}], dim=1)", fresh_output=True),
    **POOLING_TORCH_OPS,
    **NORM_TORCH_OPS,
    **ACTIVATION_TORCH_OPS,
    **STRUCTURE_TORCH_OPS,
}
