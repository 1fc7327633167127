"""ONNX -> spec: the mirror image of `specc_onnx.emit`.

    from specc_onnx.importer import import_onnx
    graph, weights = import_onnx("model.onnx")   # a Graph, {"conv1.weight": ndarray, ...}

One small pattern per op family (`patterns_layers`, `patterns_activations`,
`patterns_structure`), each returning a `Match` or a `NoMatch` with its reason; `build` walks
the graph and refuses, in one line naming the node, what no pattern covers. A PyTorch model
comes in through ONNX export (`specc_torch.export`), so there is one importer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from specc.ir import Graph
from specc_onnx.importer.build import PATTERNS, import_view, layer_name
from specc_onnx.importer.match import Match, NoMatch
from specc_onnx.importer.view import checked_view, load_model

__all__ = ["PATTERNS", "Match", "NoMatch", "import_onnx", "layer_name"]


def import_onnx(
    source: str | Path | bytes | onnx.ModelProto, *, name: str | None = None, label: str = ""
) -> tuple[Graph, dict[str, np.ndarray]]:
    """A spec Graph and its weights (PyTorch state_dict names, float32 numpy) from an ONNX model
    (a path, serialised bytes or a ModelProto). `name` names the network (default: the ONNX
    graph's name); `label` names the model in messages. Raises `UserError` (one line) for
    anything specc cannot represent exactly."""
    model, label = load_model(source, label)
    return import_view(checked_view(model, label), label, name)
