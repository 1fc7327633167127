"""Shared helpers of the transform tests: structural comparison and golden files.

Golden files live in tests/golden/transforms/. A mismatch fails the test; to accept new
output after a deliberate change, regenerate them and review the git diff:

    SPECC_UPDATE_GOLDEN=1 python -m pytest tests/test_transforms_rules.py -q
"""

from __future__ import annotations

import os
from pathlib import Path

from specc.ir import INPUT, Graph
from specc.shapes import infer

GOLDEN = Path(__file__).resolve().parent / "golden" / "transforms"


def structure(graph: Graph) -> dict:
    """Everything that makes two specs the same network, ignoring layer names: per layer its
    type, all op parameters, which layers (by position) it reads, its parameter count and
    output shape; plus input, classes, defaults and labels."""
    report = infer(graph)
    position = {INPUT: -1} | {n.name: i for i, n in enumerate(graph.nodes)}
    layers = [
        (
            n.type,
            n.op.params(),
            tuple(position[s] for s in n.inputs),
            report.info(n.name).params,
            report.shapes[n.name],
        )
        for n in graph.nodes
    ]
    return {
        "input": graph.input_shape,
        "classes": graph.classes,
        "labels": graph.labels,
        "defaults": graph.defaults,
        "layers": layers,
        "total_params": report.total_params,
    }


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("SPECC_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"missing golden file {path} — run with SPECC_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text()
    assert text == expected, f"{path.name} differs — if intended, regenerate with SPECC_UPDATE_GOLDEN=1 and review"
