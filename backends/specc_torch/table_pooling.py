"""The PyTorch entries of the pooling family (`specc.ops_pooling`): adaptive average and max
pooling, global max pooling and LP pooling. `run` and `code` call the same torch functions."""

from __future__ import annotations

import torch.nn.functional as F

from specc.ops import Shape
from specc_torch.tablebase import ModuleSpec, TorchOp, code_module, no_module, run_module, square


def _adaptive_module(cls: str):
    def module(op, ins: list[Shape]) -> ModuleSpec:
        return ModuleSpec(cls, (square(op.output_hw()),))

    return module


# Global max pooling is adaptive max pooling to 1x1, flattened: the same kernel, so the same
# switch (the first maximum in row-major order) as adaptive_max_pool and max_pool, which is
# where autograd sends the gradient (amax would share it among tied maxima).
def _run_global_max_pool(model, step, xs):
    return F.adaptive_max_pool2d(xs[0], 1).flatten(1)


def _code_global_max_pool(step, args: list[str]) -> str:
    return f"F.adaptive_max_pool2d({args[0]}, 1).flatten(1)"


def _lp_pool_module(op, ins: list[Shape]) -> ModuleSpec | None:
    if op.is_max():
        return None  # functional below: nn.LPPool2d(inf) does not print as Python, nor run on older torch
    kwargs: dict = {}
    if op.stride_hw() != op.kernel_hw():
        kwargs["stride"] = square(op.stride_hw())
    if op.ceil_mode:
        kwargs["ceil_mode"] = True
    return ModuleSpec("LPPool2d", (op.power(), square(op.kernel_hw())), kwargs)


def _max_args(op) -> str:
    """max_pool2d's arguments after the input, as LPPool2d(inf) passes them."""
    return f"{square(op.kernel_hw())!r}, {square(op.stride_hw())!r}, 0, 1, {op.ceil_mode!r}"


def _run_lp_pool(model, step, xs):
    op = step.op
    if op.is_max():  # the limit p -> infinity: max |x| (torch's own lp_pool2d for norm_type=inf)
        return F.max_pool2d(xs[0].abs(), square(op.kernel_hw()), square(op.stride_hw()), 0, 1, op.ceil_mode)
    return run_module(model, step, xs)


def _code_lp_pool(step, args: list[str]) -> str:
    if step.op.is_max():
        return f"F.max_pool2d({args[0]}.abs(), {_max_args(step.op)})"
    return code_module(step, args)


TORCH_OPS: dict[str, TorchOp] = {
    "adaptive_avg_pool": TorchOp(_adaptive_module("AdaptiveAvgPool2d"), run_module, code_module),
    "adaptive_max_pool": TorchOp(_adaptive_module("AdaptiveMaxPool2d"), run_module, code_module),
    "global_max_pool": TorchOp(no_module, _run_global_max_pool, _code_global_max_pool),
    "lp_pool": TorchOp(_lp_pool_module, _run_lp_pool, _code_lp_pool),
}
