"""The PyTorch entries of the normalisation family (`specc.ops_norm`): local response, group,
instance and layer normalisation, each a torch.nn module. Layer normalisation over the
channels of a feature map runs PyTorch's LayerNorm on the channels-last view and turns the
result back, as torchvision's ConvNeXt does (`LayerNorm2d`)."""

from __future__ import annotations

from specc.ops import Shape
from specc_torch.tablebase import ModuleSpec, TorchOp, code_module, run_module

TORCH_DEFAULT_EPS = 1e-5


def _eps_affine(op, affine_name: str, affine_default: bool) -> dict:
    """The non-default eps and affine keyword arguments of a normalisation module."""
    kwargs: dict = {}
    if op.eps != TORCH_DEFAULT_EPS:
        kwargs["eps"] = op.eps
    if op.affine != affine_default:
        kwargs[affine_name] = op.affine
    return kwargs


def _lrn_module(op, ins: list[Shape]) -> ModuleSpec:
    defaults = {"alpha": 1e-4, "beta": 0.75, "k": 1.0}
    kwargs = {name: getattr(op, name) for name, value in defaults.items() if getattr(op, name) != value}
    return ModuleSpec("LocalResponseNorm", (op.size,), kwargs)


def _group_norm_module(op, ins: list[Shape]) -> ModuleSpec:
    return ModuleSpec("GroupNorm", (op.groups, ins[0][0]), _eps_affine(op, "affine", True))


def _instance_norm_module(op, ins: list[Shape]) -> ModuleSpec:
    # track_running_stats stays False (PyTorch's default): inference uses each sample's statistics.
    return ModuleSpec("InstanceNorm2d", (ins[0][0],), _eps_affine(op, "affine", False))


def _layer_norm_module(op, ins: list[Shape]) -> ModuleSpec:
    return ModuleSpec("LayerNorm", (ins[0][0],), _eps_affine(op, "elementwise_affine", True))


# Channels last and back: LayerNorm normalises the last axis. On a flat (B, F) vector both
# moves are no-ops, so one expression serves feature maps and vectors.
def _run_layer_norm(model, step, xs):
    return model._modules[step.layer](xs[0].movedim(1, -1)).movedim(-1, 1)


def _code_layer_norm(step, args: list[str]) -> str:
    return f"self.{step.layer}({args[0]}.movedim(1, -1)).movedim(-1, 1)"


TORCH_OPS: dict[str, TorchOp] = {
    "local_response_norm": TorchOp(_lrn_module, run_module, code_module),
    "group_norm": TorchOp(_group_norm_module, run_module, code_module),
    "instance_norm": TorchOp(_instance_norm_module, run_module, code_module),
    "layer_norm": TorchOp(_layer_norm_module, _run_layer_norm, _code_layer_norm),
}
