"""The JSON Schema (`specc schema`, docs/spec.schema.json) as an editor uses it: the errors it
gives name the key at fault, and it accepts and refuses what `specc check` does.

(That the committed file is `specc schema`'s output is tests/test_cli.py's
test_schema_is_committed_and_current.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import specc
from specc.errors import SpecError

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted([*(ROOT / "specs").glob("*.yaml"), *(ROOT / "specs" / "zoo").glob("*.yaml")])
HEADER = {"name": "net", "input": {"channels": 1, "size": 8}, "classes": 2}
TAIL = [{"type": "global_avg_pool"}, {"type": "linear", "units": 2}]


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def errors_of(validator, doc: dict) -> list[tuple[list, str]]:
    return sorted((list(e.absolute_path), e.message) for e in validator.iter_errors(doc))


def test_unknown_key_is_named_with_its_layer(validator):
    doc = HEADER | {"layers": [{"type": "conv", "filter": 3}, *TAIL]}
    # Not "... is not valid under any of the given schemas": the conv branch was chosen by `type`.
    assert errors_of(validator, doc) == [
        (["layers", 0], "Additional properties are not allowed ('filter' was unexpected)")
    ]
    best = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    assert "'filter'" in best.message
    with pytest.raises(SpecError, match="unknown key 'filter' for conv"):  # what specc check says
        specc.check(yaml.safe_dump(doc))


def test_wrong_value_type_is_named_with_its_key(validator):
    doc = HEADER | {"layers": [{"type": "max_pool", "kernel": "big"}, *TAIL]}
    paths = [path for path, _ in errors_of(validator, doc)]
    assert paths and all(path[:3] == ["layers", 0, "kernel"] for path in paths)


def test_unknown_type_and_missing_type(validator):
    doc = HEADER | {"layers": [{"type": "convv", "filters": 3}, {"filters": 3}, *TAIL]}
    found = errors_of(validator, doc)
    assert found[0][0] == ["layers", 0, "type"] and "'convv' is not one of ['conv'," in found[0][1]
    assert found[1] == (["layers", 1], "'type' is a required property")
    assert len(found) == 2


def test_repeat_blocks_are_closed_too(validator):
    good = HEADER | {
        "layers": [{"repeat": 2, "layers": [{"type": "conv", "filters": 4, "kernel": 3, "padding": "same"}]}, *TAIL]
    }
    assert errors_of(validator, good) == []
    specc.check(yaml.safe_dump(good))
    bad = HEADER | {"layers": [{"repeat": 2, "layer": []}, *TAIL]}
    assert [path for path, _ in errors_of(validator, bad)] == [
        ["layers", 0],
        ["layers", 0],
    ]  # 'layers' missing, 'layer' unknown


@pytest.mark.parametrize(
    ("train", "path", "word"),
    [
        ({"lr": "fast", "epoch": 3}, ["train"], "'epoch'"),
        ({"lr": "fast"}, ["train", "lr"], "'fast'"),
        ({"augment": {"flp": True}}, ["train", "augment"], "'flp'"),
        ({"optimizer": "adam"}, ["train", "optimizer"], "'adam'"),
    ],
)
def test_train_section_is_closed(validator, train, path, word):
    doc = HEADER | {"layers": [{"type": "conv", "filters": 2, "kernel": 3}, *TAIL], "train": train}
    found = errors_of(validator, doc)
    assert path in [p for p, _ in found]
    assert any(word in message for _, message in found)
    with pytest.raises(SpecError) as refused:  # and specc check refuses it as well, naming the same key
        specc.check(yaml.safe_dump(doc))
    assert word.strip("'") in str(refused.value)


def test_a_good_train_section_passes_both(validator):
    train = {"lr": 0.05, "epochs": 3, "schedule": "cosine", "augment": {"flip": True}, "dataset": "synthetic"}
    doc = HEADER | {"layers": [{"type": "conv", "filters": 2, "kernel": 3}, *TAIL], "train": train}
    assert errors_of(validator, doc) == []
    specc.check(yaml.safe_dump(doc))


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shipped_spec_validates(validator, path):
    doc = yaml.safe_load(path.read_text())
    assert errors_of(validator, doc) == []
    # ... and a misspelt key in its first typed layer is caught at that layer.
    layers = doc["layers"]
    if isinstance(layers, list):
        index = next(i for i, layer in enumerate(layers) if "type" in layer)
        layers[index] = layers[index] | {"bogus_key": 1}
        found = errors_of(validator, doc)
        assert found == [(["layers", index], "Additional properties are not allowed ('bogus_key' was unexpected)")]
