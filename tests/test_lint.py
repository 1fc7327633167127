"""Lint warnings: located, and only where the trap is."""

from __future__ import annotations

import specc
from tests.conftest import SPECS

HEAD = "name: t\ninput: {channels: 3, size: 8}\nclasses: 4\nlayers:\n"


def messages(text: str) -> list[str]:
    return [d.format() for d in specc.check(text).warnings]


def test_relu_on_class_scores_through_pooling_and_softmax():
    (warning,) = [w for w in specc.check(SPECS / "allcnn_c.yaml").warnings]
    assert warning.label == "conv9" and warning.severity == "warning"
    assert "ReLU on the final class scores" in warning.message and "the paper does this" in warning.message
    assert (warning.pos.line, warning.pos.col) == (22, 5)


def test_no_relu_warning_without_activation():
    assert messages(HEAD + "  - {type: conv, filters: 4, kernel: 1}\n  - {type: global_avg_pool}\n") == []


def test_standalone_relu_on_scores():
    text = HEAD + "  - {type: global_avg_pool}\n  - {type: linear, units: 4}\n  - {type: relu}\n  - {type: softmax}\n"
    (line,) = messages(text)
    assert line.startswith("<string>:7:5: warning: layers[2] (relu1): ReLU on the final class scores")


def test_dropout_before_batch_norm():
    text = (
        HEAD
        + "  - {type: dropout, rate: 0.5}\n  - {type: batch_norm}\n  - {type: conv, filters: 4, kernel: 1}\n  - {type: global_avg_pool}\n"
    )
    (line,) = messages(text)
    assert line.startswith("<string>:6:5: warning: layers[1] (bn1): batch_norm right after dropout 'drop1'")


def test_border_drop():
    text = (
        HEAD.replace("size: 8", "size: 9")
        + "  - {type: conv, filters: 4, kernel: 2, stride: 2}\n  - {type: global_avg_pool}\n"
    )
    (line,) = messages(text)
    assert line == (
        "<string>:5:5: warning: layers[0] (conv1): never sees the last 1 rows (windows of 2, stride 2, padding 0"
        " stop at index 7 of 9) and 1 columns (windows of 2, stride 2, padding 0 stop at index 7 of 9)"
        " — adjust the input size or padding so the stride divides it"
    )


def test_rounding_convention_of_pools():
    report = specc.check(SPECS / "model_c.yaml")
    rounding = [w for w in report.warnings if "rounding" in w.message]
    assert [w.label for w in rounding] == ["pool1", "pool2"]
    assert "floor gives 16x16, ceil gives 17x17" in rounding[0].message


def test_unused_branch():
    text = (
        HEAD
        + "  - {name: side, type: relu}\n  - {type: conv, filters: 4, kernel: 1, inputs: input}\n  - {type: global_avg_pool}\n"
    )
    (line,) = messages(text)
    assert "layers[0] (side): output is never used" in line


def test_clean_spec_has_no_warnings():
    assert specc.check(SPECS / "allcnn_c.yaml", ["layers.conv9.activation=none"]).warnings == ()


def test_strided_1x1_projection_is_not_a_border_drop():
    """A 1x1 stride-2 shortcut (ResNet's projection) skips every other row by design: the last
    row is no different from the others, so no "never sees the last rows" warning."""
    text = HEAD.replace("size: 8", "size: 56") if "size: 8" in HEAD else HEAD
    text += "  - {type: conv, filters: 4, kernel: 1, stride: 2}\n  - {type: global_avg_pool}\n"
    assert not [m for m in messages(text) if "never sees" in m]
