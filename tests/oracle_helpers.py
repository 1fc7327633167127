"""What the oracle tests share: a one-layer spec around the layer under test."""

from __future__ import annotations


def spec_text(layer: str, c: int, h: int, w: int, name: str = "oracle") -> str:
    """One layer under test (named `x`) on a CxHxW input, then a flatten + linear head so the
    spec is complete."""
    return f"""\
name: {name}
input: {{channels: {c}, size: [{h}, {w}]}}
classes: 2
layers:
  - {{name: x, {layer}}}
  - {{type: flatten}}
  - {{type: linear, units: 2}}
"""
