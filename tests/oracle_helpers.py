"""What the oracle tests share: a one-layer spec around the layer under test, and a network of
grouped and depthwise convolutions."""

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


GROUPED = """\
name: grouped
input: {channels: 4, size: 8}
classes: 3
layers:
  - {name: g1, type: conv, filters: 8, kernel: 3, padding: same, groups: 2, stride: 2}
  - {name: bn, type: batch_norm}
  - {name: dw, type: conv, filters: 8, kernel: 3, padding: same, groups: 8, stride: 2}
  - {name: g2, type: conv, filters: 8, kernel: 1, groups: 4, bias: false}
  - {type: global_avg_pool}
  - {name: fc, type: linear, units: 3}
"""
