"""The weights a graph needs, and seeded numpy weights for emitting without torch.

The names and shapes are PyTorch's (`<layer>.weight` (out, in/groups, kh, kw) ...), so a
state_dict converted to numpy feeds `emit` unchanged. `random_weights` is for tests and
benchmarks of this backend alone; `specc compile --seed` uses the torch backend's own
initialisation so that the .onnx and the .py share one set of weights.
"""

from __future__ import annotations

import numpy as np

from specc.ir import Graph
from specc.shapes import infer


def weight_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """Every weight `emit` reads from `graph`, name -> shape, in spec order."""
    shapes = infer(graph, check_classes=False).shapes
    out: dict[str, tuple[int, ...]] = {}
    for node in graph.nodes:
        for suffix, shape in node.op.weights([shapes[s] for s in node.inputs]).items():
            out[f"{node.name}.{suffix}"] = tuple(shape)
    return out


def random_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """He-scaled random weights, small random biases and non-trivial batch_norm statistics
    (so that a test of batch_norm folding tests something)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in weight_shapes(graph).items():
        kind = name.rsplit(".", 1)[1]
        if kind == "weight" and len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            out[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        elif kind == "running_var":
            out[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif kind == "weight":  # batch_norm gamma
            out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            out[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    return out
