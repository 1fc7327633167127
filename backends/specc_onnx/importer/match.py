"""What a pattern returns: a `Match` (the specc layer it found, the ONNX nodes it covers, the
values it reads and the weights it takes) or a `NoMatch` carrying the reason, in the manner
of onnxscript's rewriter. A pattern is `(view, node) -> Match | NoMatch`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from specc_onnx.importer.view import ModelView, OnnxNode, short_float


@dataclass(frozen=True)
class Match:
    """One specc layer found in the ONNX graph.

    `op`: the layer's fields, `type` included; `inputs`: the ONNX values it reads (data only,
    weights are in `weights`); `nodes`: the ONNX nodes it covers, the last one writes
    `output`; `anchor`: the node whose name names the layer; `weights`: `{suffix: array}`
    in specc's (PyTorch's) names and layouts."""

    op: dict
    inputs: tuple[str, ...]
    nodes: tuple[OnnxNode, ...]
    anchor: OnnxNode
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.nodes[-1].output

    def extended(self, op: dict, nodes: tuple[OnnxNode, ...]) -> Match:
        """The same layer with more fields and more nodes (a fused activation)."""
        return Match({**self.op, **op}, self.inputs, self.nodes + nodes, self.anchor, self.weights)


@dataclass(frozen=True)
class NoMatch:
    """Why a pattern did not apply; the importer reports it naming the node."""

    reason: str

    def __bool__(self) -> bool:
        return False


Result = Match | NoMatch
Pattern = Callable[[ModelView, OnnxNode], Result]


def const_input(view: ModelView, node: OnnxNode, index: int, what: str) -> np.ndarray | NoMatch:
    """The constant at input `index` (an initializer or a Constant node), or why not."""
    if index >= len(node.inputs) or not node.inputs[index]:
        return NoMatch(f"it has no {what}")
    value = view.const(node.inputs[index])
    if value is None:
        return NoMatch(f"its {what} '{node.inputs[index]}' is computed, not a stored constant")
    return value


def scalar(value: np.ndarray) -> float | None:
    """A one-element array as a float; None otherwise."""
    return short_float(float(value.reshape(-1)[0])) if value.size == 1 else None


def pair(values, what: str) -> tuple[int, int] | NoMatch:
    """Two spatial values (kernel, strides, dilations) from an attribute list."""
    values = [int(v) for v in values]
    if len(values) != 2:
        return NoMatch(f"{what} {values} is not 2-D — specc layers work on NxCxHxW maps")
    return values[0], values[1]


def symmetric_pads(node: OnnxNode) -> tuple[int, int] | NoMatch:
    """(pad h, pad w) from `pads` [top, left, bottom, right], which must be symmetric."""
    if node.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        return NoMatch(f"auto_pad {_text(node.attrs['auto_pad'])} — specc needs explicit pads")
    pads = [int(p) for p in node.attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        return NoMatch(f"pads {pads} are not 2-D")
    top, left, bottom, right = pads
    if (top, left) != (bottom, right):
        return NoMatch(f"asymmetric pads {pads} (top, left, bottom, right) — specc pads each side of a window equally")
    return top, left


def squash(h: int, w: int):
    """3 for (3, 3), [3, 5] otherwise: the spec's spelling."""
    return h if h == w else [h, w]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def only_reader(view: ModelView, value: str) -> OnnxNode | None:
    """The one node reading `value`, when no other node and no graph output reads it."""
    readers = view.consumers(value)
    if len(readers) != 1 or view.is_output(value):
        return None
    return readers[0]
