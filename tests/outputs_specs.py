"""Specs the output tests share: a backbone with several outputs."""

from __future__ import annotations

BACKBONE = """name: backbone
input: {channels: 3, size: 16}
defaults:
  conv: {kernel: 3, padding: same, activation: relu}
outputs: [stage1, stage2, head]
layers:
  - {type: conv, filters: 8}
  - {name: stage1, type: batch_norm}
  - {type: conv, filters: 16, stride: 2}
  - {name: stage2, type: dropout, rate: 0.1}
  - {type: conv, filters: 16, stride: 2}
  - {type: global_avg_pool}
  - {name: head, type: linear, units: 5}
"""
