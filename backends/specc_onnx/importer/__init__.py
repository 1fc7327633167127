"""ONNX -> spec: the mirror image of `specc_onnx.emit`.

    from specc_onnx.importer import import_onnx
    graph, weights = import_onnx("model.onnx")   # a Graph, {"conv1.weight": ndarray, ...}

One small pattern per op family (`patterns_layers`, `patterns_activations`,
`patterns_structure`), each returning a `Match` or a `NoMatch` with its reason; `build` walks
the graph and refuses, in one line naming the node, what no pattern covers. A PyTorch model
comes in through ONNX export (`specc_torch.export`), so there is one importer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from specc.ir import Graph
from specc_onnx.importer.build import PATTERNS, import_view, layer_name
from specc_onnx.importer.embedded import embedded_spec
from specc_onnx.importer.match import Match, NoMatch
from specc_onnx.importer.view import checked_view, load_model
from specc_onnx.metadata import PREFIX

__all__ = ["PATTERNS", "Imported", "Match", "NoMatch", "import_model", "import_onnx", "layer_name"]


@dataclass(frozen=True)
class Imported:
    """What an import gives: the spec, its weights (state_dict names, float32 numpy) and notes
    for the user (what came back from the embedded spec, what was folded)."""

    graph: Graph
    weights: dict[str, np.ndarray]
    notes: tuple[str, ...] = field(default=())
    restored: bool = False  # the model's embedded spec, as written
    sources: dict[str, str] = field(default_factory=dict)  # layer -> the module its stored weights are named after


def import_onnx(
    source: str | Path | bytes | onnx.ModelProto, *, name: str | None = None, label: str = ""
) -> tuple[Graph, dict[str, np.ndarray]]:
    """A spec Graph and its weights (PyTorch state_dict names, float32 numpy) from an ONNX model
    (a path, serialised bytes or a ModelProto). `name` names the network (default: the ONNX
    graph's name); `label` names the model in messages. Raises `UserError` (one line) for
    anything specc cannot represent exactly."""
    result = import_model(source, name=name, label=label)
    return result.graph, result.weights


def import_model(
    source: str | Path | bytes | onnx.ModelProto,
    *,
    name: str | None = None,
    label: str = "",
    allow_partial: bool = False,
) -> Imported:
    """`import_onnx` with notes. A model specc compiled comes back as its embedded spec when
    that spec, compiled with the model's weights, is exactly the model (`embedded`).
    `allow_partial`: a model with nodes specc cannot map gives the layers before the first
    of them (said in the notes) instead of the refusal."""
    model, label = load_model(source, label)
    view = checked_view(model, label)  # the checks run whatever the metadata says
    restored = embedded_spec(model, view.consts)
    if restored is not None:
        graph, weights = restored
        graph = graph.replace(name=name) if name else graph
        return Imported(graph, weights, ("restored from the spec the model carries (specc.spec, verified)",), True)
    graph, weights, notes, sources = import_view(view, label, name, allow_partial=allow_partial)
    notes = (*notes, *_folded_notes(model))
    del model, view  # the parsed model (the weights' first copy) and the view's read-only arrays
    for key in list(weights):  # writable arrays, made one by one as each read-only one is let go
        if not weights[key].flags.writeable:
            weights[key] = np.array(weights[key])
    return Imported(graph, weights, notes, sources=sources)


def _folded_notes(model: onnx.ModelProto) -> tuple[str, ...]:
    """What `specc.folded` says was folded: each such batch_norm is now its conv's bias."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        pairs = json.loads(props.get(f"{PREFIX}folded", "[]"))
        return tuple(f"batch_norm {bn} was folded into {conv}: it comes back as {conv} with bias" for conv, bn in pairs)
    except (ValueError, TypeError):
        return ()
