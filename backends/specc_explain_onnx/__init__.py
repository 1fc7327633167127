"""specc_explain_onnx: guided backpropagation, deconvnet and saliency maps as ONNX models.

    from specc_explain_onnx import emit_explain
    model = emit_explain(graph, weights, method="guided", layer="conv6", unit="5")

The model runs the forward pass and then the backward pass — `specc.backward`'s definitions,
written out as ONNX nodes by `OnnxGrad` (transposed convolutions, the rule's ReLU masks, the
max-pooling switches) — so onnxruntime alone produces the maps. Like `specc_onnx`, this package never imports torch.
"""

from __future__ import annotations

from specc.backward import METHODS
from specc_explain_onnx.emit import MASK_INPUT, MIN_OPSET, check_explain_model, emit_explain
from specc_explain_onnx.grad import OnnxGrad

__all__ = ["MASK_INPUT", "METHODS", "MIN_OPSET", "OnnxGrad", "check_explain_model", "emit_explain"]
