"""specc's ONNX backend: emit ONNX from the IR and numpy weights, run it in onnxruntime.

    from specc_onnx import emit, save
    model = emit(graph, weights)            # weights: PyTorch state_dict names, numpy arrays
    save(model, "build/allcnn_c.onnx")      # atomic

    from specc_onnx.runtime import make_session, read_metadata

This package never imports torch; onnxruntime only when a session is made.
"""

from __future__ import annotations

from specc_onnx.emit import DEFAULT_OPSET, emit, layer_values, save, to_bytes, write_atomic
from specc_onnx.fold import fold_batch_norm
from specc_onnx.metadata import SpeccMetadata
from specc_onnx.ops import OP_TABLE
from specc_onnx.verify import verify
from specc_onnx.weights import random_weights, weight_shapes

__all__ = [
    "DEFAULT_OPSET",
    "OP_TABLE",
    "SpeccMetadata",
    "emit",
    "fold_batch_norm",
    "layer_values",
    "random_weights",
    "save",
    "to_bytes",
    "verify",
    "weight_shapes",
    "write_atomic",
]
