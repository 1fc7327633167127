"""Every user error is one located line (file:line:col: path (layer): message), exit 2."""

from __future__ import annotations

import pytest

from specc.cli import main
from specc.ops import OPS

HEAD = "name: t\ninput: {channels: 3, size: 8}\nclasses: 10\n"


def errors_of(tmp_path, monkeypatch, capsys, text: str, *args: str) -> list[str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(text)
    code = main(["check", "spec.yaml", *args])
    out = capsys.readouterr()
    assert code == 2, out
    assert "Traceback" not in out.err
    return out.err.strip().splitlines()


CASES = {
    "unknown key with suggestion": (
        HEAD + "layers:\n  - {type: conv, filters: 10, kernal: 3}\n",
        [
            "spec.yaml:5:5: layers[0] (conv1): missing required 'kernel' — expected a positive integer or [height, width]",
            "spec.yaml:5:31: layers[0] (conv1): unknown key 'kernal' for conv — did you mean 'kernel'?",
        ],
    ),
    "unknown layer type": (
        HEAD + "layers:\n  - {type: maxpool, kernel: 2}\n",
        [
            "spec.yaml:5:12: layers[0] (layer1): unknown layer type 'maxpool' — did you mean 'max_pool'?"
            f" (layer types: {', '.join(sorted(OPS))})"
        ],
    ),
    "missing type": (
        HEAD + "layers:\n  - {filters: 3}\n",
        [f"spec.yaml:5:5: layers[0] (layer1): missing 'type' — expected one of {', '.join(OPS)}"],
    ),
    "bad value": (
        HEAD + "layers:\n  - {type: conv, filters: -1, kernel: 1}\n",
        [
            "spec.yaml:5:27: layers[0] (conv1): filters = -1: input should be greater than 0"
            " — expected a positive integer (output channels)"
        ],
    ),
    "wrong type of value": (
        HEAD + "layers:\n  - {type: conv, filters: 10, kernel: 1, padding: half}\n",
        [
            "spec.yaml:5:51: layers[0] (conv1): padding = 'half' is not valid"
            " — expected 'same', 'valid', an integer or [height, width]"
        ],
    ),
    "valid conv too small, with arithmetic": (
        HEAD
        + "layers:\n  - {type: conv, filters: 4, kernel: 3, stride: 4}\n  - {type: conv, filters: 10, kernel: 3}\n",
        [
            "spec.yaml:6:5: layers[1] (conv2): 3x3 valid conv on a 2x2 input: (2 - 3)/1 + 1 = 0 — expected an output of at least 1x1"
        ],
    ),
    "pool larger than input": (
        HEAD + "layers:\n  - {type: max_pool, kernel: 9}\n",
        ["spec.yaml:5:5: layers[0] (pool1): 9x9 max_pool is larger than its 8x8 input"],
    ),
    "channel mismatch at add": (
        HEAD
        + "layers:\n  - {name: a, type: conv, filters: 4, kernel: 1}\n  - {name: b, type: conv, filters: 10, kernel: 1}\n"
        + "  - {type: add, inputs: [a, b]}\n  - {type: global_avg_pool}\n",
        [
            "spec.yaml:7:5: layers[2] (add1): channel mismatch: inputs have 4 and 10 channels (4x8x8 vs 10x8x8) — expected equal shapes"
        ],
    ),
    "cycle": (
        HEAD + "layers:\n  - {name: a, type: relu, inputs: b}\n  - {name: b, type: relu, inputs: a}\n",
        ["spec.yaml:5:35: layers[0] (a): cycle: a -> b -> a"],
    ),
    "dangling input": (
        HEAD + "layers:\n  - {name: first, type: conv, filters: 10, kernel: 1}\n  - {type: relu, inputs: firts}\n",
        ["spec.yaml:6:26: layers[1] (relu1): unknown input 'firts' — did you mean 'first'?"],
    ),
    "classifier size vs classes": (
        HEAD + "layers:\n  - {type: conv, filters: 12, kernel: 1}\n  - {type: global_avg_pool}\n",
        [
            "spec.yaml:6:5: layers[1] (gap1): the network outputs 12 values but classes is 10"
            " — the last conv/linear layer must have 10 outputs"
        ],
    ),
    "feature map at the end": (
        HEAD + "layers:\n  - {type: conv, filters: 10, kernel: 1}\n",
        [
            "spec.yaml:5:5: layers[0] (conv1): the network ends in a 10x8x8 feature map — expected 10 class scores;"
            " add a global_avg_pool (or flatten + linear) to reach the class scores, or drop classes: for a network"
            " that outputs a feature map"
        ],
    ),
    "linear on a feature map": (
        HEAD + "layers:\n  - {type: linear, units: 10}\n",
        [
            "spec.yaml:5:5: layers[0] (fc1): linear needs a flat vector but gets a 3x8x8 feature map — add a flatten or global_avg_pool layer before it"
        ],
    ),
    "unknown top-level key": (
        HEAD + "clases: 3\nlayers:\n  - {type: global_avg_pool}\n",
        ["spec.yaml:4:1: unknown key 'clases' for a spec — did you mean 'classes'?"],
    ),
    "duplicate names": (
        HEAD + "layers:\n  - {name: x, type: relu}\n  - {name: x, type: global_avg_pool}\n",
        ["spec.yaml:6:12: layers[1] (x): duplicate layer name 'x' (first used at spec.yaml:5:5)"],
    ),
    "python tag refused": (
        HEAD + "layers: !!python/object/apply:os.system ['true']\n",
        ["spec.yaml:4:9: YAML: tag not allowed (plain YAML only): 'tag:yaml.org,2002:python/object/apply:os.system'"],
    ),
    "yaml syntax": (
        HEAD + "layers:\n  - {type: conv, filters: 3\n",
        ["spec.yaml:6:1: YAML: expected ',' or '}', but got '<stream end>'"],
    ),
    "duplicate key": (
        HEAD + "classes: 3\nlayers: []\n",
        ["spec.yaml:4:1: classes: duplicate key 'classes'"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_located_error(case, tmp_path, monkeypatch, capsys):
    text, expected = CASES[case]
    assert errors_of(tmp_path, monkeypatch, capsys, text) == expected


def test_all_errors_of_a_file_are_reported_together(tmp_path, monkeypatch, capsys):
    text = (
        HEAD
        + "defaults:\n  conv: {activaton: relu}\n"
        + "layers:\n"
        + "  - {type: conv, filter: 16}\n"
        + "  - {type: conv, filters: 16, kernel: 3, stride: 2}\n"
        + "  - {type: conv, filters: 16, kernel: 3, stride: 2}\n"
        + "  - {type: dropout, rate: 1.5}\n"
    )
    lines = errors_of(tmp_path, monkeypatch, capsys, text)
    assert lines == [
        "spec.yaml:5:10: defaults.conv: unknown key 'activaton' for conv — did you mean 'activation'?",
        "spec.yaml:7:5: layers[0] (conv1): missing required 'kernel' — expected a positive integer or [height, width]",
        "spec.yaml:7:5: layers[0] (conv1): missing required 'filters' — expected a positive integer (output channels)",
        "spec.yaml:7:18: layers[0] (conv1): unknown key 'filter' for conv — did you mean 'filters'?",
        "spec.yaml:10:27: layers[3] (drop1): rate = 1.5: input should be less than 1 — expected a probability in [0, 1)",
    ]


def test_shape_errors_of_the_valid_part_come_with_validation_errors(tmp_path, monkeypatch, capsys):
    text = HEAD + "layers:\n" + "  - {type: conv, filters: 16, kernel: 9}\n" + "  - {type: dropout, rate: 2}\n"
    lines = errors_of(tmp_path, monkeypatch, capsys, text)
    assert lines == [
        "spec.yaml:5:5: layers[0] (conv1): 9x9 valid conv on a 8x8 input: (8 - 9)/1 + 1 = 0 — expected an output of at least 1x1",
        "spec.yaml:6:27: layers[1] (drop1): rate = 2: input should be less than 1 — expected a probability in [0, 1)",
    ]


def test_parameter_budget(tmp_path, monkeypatch, capsys):
    text = HEAD + "layers:\n  - {type: conv, filters: 10, kernel: 1}\n  - {type: global_avg_pool}\n"
    lines = errors_of(tmp_path, monkeypatch, capsys, text, "--max-params", "20")
    assert lines == ["spec.yaml:4:1: layers: 40 parameters exceed the budget of 20 (--max-params to change)"]


def test_activation_budget(tmp_path, monkeypatch, capsys):
    text = "name: t\ninput: {channels: 3, size: 30000}\nclasses: 10\nlayers:\n  - {type: conv, filters: 10, kernel: 1}\n  - {type: global_avg_pool}\n"
    lines = errors_of(tmp_path, monkeypatch, capsys, text)
    assert lines == [
        "spec.yaml:4:1: layers: 43.6 GiB of activations per image exceed the budget of 16.0 GiB (--max-activation-gib to change)"
    ]


def test_missing_file(capsys):
    assert main(["check", "no/such/spec.yaml"]) == 2
    assert capsys.readouterr().err == "error: no/such/spec.yaml: no such file\n"


def test_alias_bomb_is_refused(tmp_path, monkeypatch, capsys):
    rows = ["a: &a [1,1,1,1,1,1,1,1,1]"]
    for prev, cur in zip("abcde", "bcdef"):
        rows.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines = errors_of(tmp_path, monkeypatch, capsys, "\n".join(rows) + "\n")
    assert len(lines) == 1 and "more than 200000 nodes (alias bomb?) — refusing" in lines[0]


def test_oversized_file_is_refused(tmp_path, monkeypatch, capsys):
    lines = errors_of(tmp_path, monkeypatch, capsys, "# " + "x" * (5 * 1024 * 1024) + "\n")
    assert lines == ["error: spec.yaml: spec is larger than 4 MiB — refusing"]


def test_set_override_errors_are_located_at_the_flag(tmp_path, monkeypatch, capsys):
    text = HEAD + "layers:\n  - {type: conv, filters: 10, kernel: 1}\n  - {type: global_avg_pool}\n"
    lines = errors_of(tmp_path, monkeypatch, capsys, text, "--set", "layers.conv1.filters=zero")
    assert lines == [
        "--set layers.conv1.filters=zero: layers[0] (conv1): filters = 'zero' is not valid"
        " — expected a positive integer (output channels)"
    ]


def test_strict_turns_warnings_into_errors(tmp_path, monkeypatch, capsys):
    text = HEAD + "layers:\n  - {type: conv, filters: 10, kernel: 1, activation: relu}\n  - {type: global_avg_pool}\n"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(text)
    assert main(["check", "spec.yaml"]) == 0
    assert "warning: layers[0] (conv1): ReLU on the final class scores" in capsys.readouterr().err
    assert main(["check", "spec.yaml", "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spec.yaml:5:5: layers[0] (conv1): ReLU on the final class scores")


ALL_AT_ONCE = {
    "classes mismatch beside a broken branch": (
        HEAD
        + "layers:\n  - {name: c1, type: conv, filters: 4, kernel: 2, padding: same}\n"
        + "  - {name: c2, type: conv, filters: 4, kernel: 3, inputs: input}\n"
        + "  - {name: gap, type: global_avg_pool}\n  - {name: fc, type: linear, units: 5}\n",
    ),
    "classes mismatch after an even 'same' kernel": (
        HEAD
        + "layers:\n  - {name: c1, type: conv, filters: 4, kernel: 2, padding: same}\n"
        + "  - {name: c2, type: conv, filters: 4, kernel: 3}\n"
        + "  - {name: gap, type: global_avg_pool}\n  - {name: fc, type: linear, units: 5}\n",
    ),
}


@pytest.mark.parametrize("case", sorted(ALL_AT_ONCE))
def test_errors_after_a_broken_layer_are_reported_too(case, tmp_path, monkeypatch, capsys):
    (text,) = ALL_AT_ONCE[case]
    assert errors_of(tmp_path, monkeypatch, capsys, text) == [
        "spec.yaml:5:5: layers[0] (c1): 'same' padding needs an odd kernel, conv has 2x2"
        " — give an explicit padding or use 'valid'",
        "spec.yaml:8:5: layers[3] (fc): the network outputs 5 values but classes is 10"
        " — the last conv/linear layer must have 10 outputs",
    ]
