"""Receptive field and jump through a squeeze-and-excitation gate, by hand: the gate is a flat
vector (global pooling of the whole map), so it widens the field but has no spacing of its own;
the gated map keeps the map's jump."""

from __future__ import annotations

import specc

SE = """
name: se
input: {channels: 3, size: 32}
classes: 10
layers:
  - {name: stem, type: conv, filters: 8, kernel: 3, padding: same, stride: 2}
  - {name: dw, type: conv, filters: 8, kernel: 3, padding: same, groups: 8}
  - {name: sq, type: global_avg_pool}
  - {name: fc1, type: linear, units: 2, activation: relu}
  - {name: fc2, type: linear, units: 8, activation: sigmoid}
  - {name: gate, type: mul, inputs: [dw, fc2]}
  - {name: proj, type: conv, filters: 8, kernel: 3, padding: same}
  - {name: gap, type: global_avg_pool}
  - {name: fc, type: linear, units: 10}
"""


def test_gate_keeps_the_maps_jump():
    report = specc.check(SE).report
    # stem 3x3/2: rf 3, jump 2; dw 3x3/1: rf 3 + 2*2 = 7, jump 2
    assert report.info("dw").rf == (7, 7) and report.info("dw").jump == (2, 2)
    # global pooling of the 16x16 map: rf 7 + (16 - 1) * 2 = 37
    assert report.info("sq").rf == (37, 37)
    # the gated map: each position sees the whole gate (37) and keeps jump 2
    assert report.info("gate").rf == (37, 37) and report.info("gate").jump == (2, 2)
    # a 3x3 conv after it: 37 + 2 * 2 = 41 (a jump of 32 would give 37 + 64 = 101)
    assert report.info("proj").rf == (41, 41) and report.info("proj").jump == (2, 2)
