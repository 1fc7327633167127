"""A PyTorch module to ONNX bytes, in memory: how a PyTorch model comes into specc
(`specc import --torch`, `specc.from_torch`). The ONNX importer (`specc_onnx.importer`) then
reads it, so there is one importer, not two.

TorchScript's exporter (`dynamo=False`): it needs no extra packages and leaves a plain graph
of standard ops, which is what the importer's patterns read; batch norm is kept (not folded
into the conv before it), so an imported model can be trained on."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from specc.errors import UserError

EXPORT_OPSET = 17


def to_onnx_bytes(module: nn.Module, example_input: torch.Tensor, *, opset: int = EXPORT_OPSET) -> bytes:
    """`module` in eval mode exported with `example_input` (N, C, H, W), the batch axis
    dynamic. The module's train/eval mode is restored afterwards."""
    if not isinstance(module, nn.Module):
        raise UserError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input).__name__
        raise UserError(f"example input {shape}: expected one (N, C, H, W) image tensor")
    was_training = module.training
    buffer = io.BytesIO()
    try:
        module.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            torch.onnx.export(
                module,
                (example_input,),
                buffer,  # type: ignore[arg-type]  # a file object works; the stub lists paths only
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                do_constant_folding=True,
                # PRESERVE on a module in eval mode: BatchNormalization stays a node of its own
                # (EVAL would fold it into the conv before), so it comes back as batch_norm
                training=torch.onnx.TrainingMode.PRESERVE,
            )
    except UserError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - many types for unsupported code; a forward's sys.exit
        lines = str(exc).strip().splitlines()
        if isinstance(exc, SystemExit):  # its message is only the exit code
            lines = [f"the model called sys.exit({exc.code!r})"]
        raise UserError(f"torch.onnx.export fails: {lines[0] if lines else type(exc).__name__}") from None
    finally:
        module.train(was_training)
    return buffer.getvalue()
