"""fold_batch_norm, the graph part: which batch_norms fold, why the others do not (located,
all at once), chains, and the checkpoint path refusing it. The before/after golden text is
in test_transforms_rules; the folded numbers against torch are in test_onnx_parity."""

from __future__ import annotations

import numpy as np
import pytest

import specc
from specc.cli import main
from specc.errors import SpecError, UserError
from specc.transforms.fold_batch_norm import plan
from specc.transforms.weights import remap_state, weight_shapes
from tests.conftest import SPECS

# Every reason a batch_norm stays, line numbers in comments; c1 folds two in a row.
FOLDS = """\
name: folds
input: {channels: 3, size: 8}
classes: 4
layers:
  - {type: batch_norm}                                          # 5: reads the input
  - {name: c1, type: conv, filters: 4, kernel: 3, padding: same}
  - {name: c1_bn, type: batch_norm}
  - {name: c1_bn2, type: batch_norm, affine: false}
  - {name: c2, type: conv, filters: 4, kernel: 1, activation: relu}
  - {name: c2_bn, type: batch_norm}                             # 10: after a fused relu
  - {name: c3, type: conv, filters: 4, kernel: 1}
  - {name: c3_bn, type: batch_norm}                             # 12: c3 also feeds the add
  - {type: add, inputs: [c3, c3_bn]}
  - {type: max_pool, kernel: 2}
  - {type: batch_norm}                                          # 15: reads a max_pool
  - {type: global_avg_pool}
"""

REASONS = [
    (5, 0, "bn1", "it reads the network input, not a conv or linear or conv_transpose layer"),
    (10, 5, "c2_bn", "'c2' applies relu before it"),
    (12, 7, "c3_bn", "'c3' also feeds add1"),
    (15, 10, "bn2", "its input 'pool1' is a max_pool, not a conv or linear or conv_transpose layer"),
]


def test_every_reason_is_located_and_reported_at_once(write_spec):
    path = write_spec(FOLDS)
    with pytest.raises(SpecError) as info:
        specc.transform(path, fold_batch_norm=True)
    assert [d.format() for d in info.value.diagnostics] == [
        f"{path}:{line}:5: layers[{index}] ({name}): transform fold_batch_norm: cannot fold {name}: {why}"
        " (--skip-unsupported leaves it in place)"
        for line, index, name, why in REASONS
    ]


def test_skipping_folds_the_rest_and_warns(write_spec):
    path = write_spec(FOLDS)
    result = specc.transform(path, fold_batch_norm=True, skip_unsupported=True)
    names = [n.name for n in result.graph.nodes]
    assert names == ["bn1", "c1", "c2", "c2_bn", "c3", "c3_bn", "add1", "pool1", "bn2", "gap1"]
    c1 = result.graph.node("c1")
    assert c1.op.bias and c1.pos == result.source.node("c1").pos  # still located at its own line
    assert result.graph.node("c2").inputs == ("c1",)  # read c1_bn2, which c1 replaced
    assert [(n.label, n.severity) for n in result.notes] == [(name, "warning") for _, _, name, _ in REASONS]
    assert result.notes[0].message == (
        "transform fold_batch_norm: left in place: cannot fold bn1: it reads the network input, not a conv or linear or conv_transpose layer"
    )
    folds = plan(result.source)
    assert folds.folded == (("c1", "c1_bn"), ("c1", "c1_bn2"))
    assert folds.skipped == tuple((name, why) for _, _, name, why in REASONS)
    assert folds.graph == result.graph


def test_no_batch_norm_is_a_note():
    result = specc.transform(SPECS / "model_c.yaml", fold_batch_norm=True)
    assert result.graph == result.source
    assert result.notes[0].message == "transform fold_batch_norm: no batch_norm layer — nothing to fold"


def test_checkpoints_are_not_carried_through_a_fold():
    # The folded values need arithmetic on the trained statistics, which the name-based
    # remapping does not do: it refuses rather than drop the batch_norms' weights.
    result = specc.transform(SPECS / "resnet_tiny.yaml", fold_batch_norm=True)
    state = {
        f"{layer}.{k}": np.ones(shape)
        for layer, e in weight_shapes(result.source_report).items()
        for k, shape in e.items()
    }
    with pytest.raises(UserError, match="fold_batch_norm removes weighted layer stem_bn"):
        remap_state(state, result.source_report, result.report, "fold_batch_norm", "x.pt")


def test_cli_flag(capsys):
    assert main(["transform", str(SPECS / "resnet_tiny.yaml"), "--fold-batch-norm", "--diff"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resnet_tiny: fold_batch_norm\nlayers: 22 → 16 (0 added, 6 removed, 8 changed)\n")
