"""The transform table is derived from the transforms' own fields: each option is declared
once (type, choices, default, help) and the table, the CLI and the constructors agree."""

from __future__ import annotations

import dataclasses

import pytest

from specc.errors import UserError
from specc.transforms import OPTIONS, TRANSFORMS, ReplacePooling, ReplaceStride, make


def test_entries_come_from_the_fields():
    assert list(TRANSFORMS) == [
        "replace_pooling",
        "replace_stride",
        "width_mult",
        "classes",
        "input",
        "fc_to_conv",
        "linear_scores",
        "fold_batch_norm",
    ]
    assert TRANSFORMS["replace_pooling"].choices == ("strided", "conv", "convpool")  # its Literal
    assert TRANSFORMS["replace_stride"].choices == ("maxpool", "avgpool")
    assert TRANSFORMS["replace_pooling"].options == ("pool_types", "skip_unsupported")
    assert TRANSFORMS["replace_stride"].options == ("skip_unsupported",)  # pool_kernel: constructor only
    assert TRANSFORMS["fc_to_conv"].parse is None and TRANSFORMS["fold_batch_norm"].parse is None  # switches
    assert TRANSFORMS["classes"].parse("12") == 12 and TRANSFORMS["width_mult"].parse("0.5") == 0.5
    assert TRANSFORMS["input"].parse("1x28x28") == (1, 28, 28)
    assert [(o.name, o.flag, o.default, o.metavar) for o in OPTIONS.values()] == [
        ("pool_types", "--pool-types", ("max_pool",), "max,avg"),
        ("skip_unsupported", "--skip-unsupported", False, None),
        ("round_to", "--round", 1, "N"),
    ]
    assert OPTIONS["skip_unsupported"].parse is None and OPTIONS["round_to"].parse("8") == 8


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_entry_builds_its_transform_with_the_field_defaults(name):
    entry = TRANSFORMS[name]
    values = {"replace_pooling": "conv", "replace_stride": "avgpool", "width_mult": 0.5, "classes": 3, "input": "1x8x8"}
    value = values.get(name, True)
    step = make(name, value)
    assert type(step) is entry.cls
    for field in dataclasses.fields(step):
        if field.name in entry.options:
            assert getattr(step, field.name) == OPTIONS[field.name].default


def test_choices_are_checked_once_for_every_caller():
    with pytest.raises(UserError, match="^--replace-pooling avg: expected one of strided, conv, convpool$"):
        ReplacePooling("avg")
    with pytest.raises(UserError, match="^--replace-pooling avg: expected one of strided, conv, convpool$"):
        make("replace_pooling", "avg")
    with pytest.raises(UserError, match="^--replace-stride max: expected one of maxpool, avgpool — did you mean"):
        ReplaceStride("max")
