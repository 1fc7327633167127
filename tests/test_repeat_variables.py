"""Repeat variables: `${i}` is the documented form, `$i` works where the name ends at a
character that is not a letter, digit or _, `s$i_conv` gets one error that suggests
`s${i}_conv` (not one per iteration), and `${i}` unquoted in a flow mapping — which YAML
cannot parse — gets an error that says to quote it."""

from __future__ import annotations

import pytest
import yaml

from specc.errors import Diagnostic, SourcePos, SpecError
from specc.spec import load_graph_text

HEAD = "name: t\ninput: {channels: 3, size: 8}\nlayers:\n"


def load_errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_graph_text(text, "spec.yaml")
    return [d.format() for d in err.value.diagnostics]


def names(text: str) -> list[str]:
    return [n.name for n in load_graph_text(text, "spec.yaml").nodes]


def test_braced_variables_inside_names_quoted_in_flow_style_or_plain_in_block_style():
    flow = HEAD + '  - repeat: 2\n    layers:\n      - {name: "s${i}_conv", type: conv, filters: 4, kernel: 1}\n'
    block = HEAD + "  - repeat: 2\n    layers:\n      - name: s${i}_conv\n        type: relu\n"
    assert names(flow) == ["s1_conv", "s2_conv"]
    assert names(block) == ["s1_conv", "s2_conv"]


def test_a_whole_value_keeps_its_type_and_the_short_form_works_where_unambiguous():
    text = (
        HEAD + "  - repeat: 2\n    vars: {f: [4, 8]}\n    layers:\n"
        '      - {name: c$i, type: conv, filters: "${f}", kernel: 1}\n'
        "      - {name: block$i.relu, type: relu}\n"
    )
    with pytest.raises(SpecError):  # `block1.relu` is no valid layer name, but `$i` was read as `i`
        load_graph_text(text, "spec.yaml")
    graph = load_graph_text(text.replace("block$i.relu", "r$i"), "spec.yaml")
    assert [n.name for n in graph.nodes] == ["c1", "r1", "c2", "r2"]
    assert [n.op.params()["filters"] for n in graph.nodes if n.type == "conv"] == [4, 8]


def test_dollar_i_followed_by_a_word_character_is_one_error_suggesting_braces():
    text = HEAD + "  - repeat: 3\n    layers:\n      - {name: s$i_conv, type: conv, filters: 4, kernel: 1}\n"
    assert load_errors(text) == [
        "spec.yaml:6:16: layers[0].layers[0]: unknown variable $i_conv — did you mean '${i}_conv'? (a bare $name"
        " runs to the first character that is not a letter, digit or _; known: ${i})"
    ]


def test_the_longest_known_prefix_is_suggested():
    text = (
        HEAD
        + "  - repeat: 2\n    vars: {f: [4, 8], filters: [1, 2]}\n    layers:\n      - {name: x$filters2, type: relu}\n"
    )
    (line,) = load_errors(text)
    assert "unknown variable $filters2 — did you mean '${filters}2'?" in line
    assert line.endswith("known: ${i}, ${f}, ${filters})")


def test_an_unknown_braced_variable_gets_a_spelling_suggestion():
    text = HEAD + "  - repeat: 2\n    vars: {rate: [0.1, 0.2]}\n    layers:\n      - {type: dropout, rate: $rat}\n"
    assert load_errors(text)[0] == (
        "spec.yaml:7:31: layers[0].layers[0]: unknown variable $rat — did you mean '${rate}'? (known: ${i}, ${rate})"
    )


def test_pyyaml_cannot_read_an_unquoted_dollar_brace_in_a_flow_mapping():
    # What the error below is for: YAML reads the `{` of `${i}` as a nested flow mapping.
    with pytest.raises(yaml.YAMLError, match="expected ',' or '}', but got '{'"):
        yaml.safe_load("{name: s${i}_conv}")
    assert yaml.safe_load("name: s${i}_conv") == {"name": "s${i}_conv"}


def test_an_unquoted_dollar_brace_in_a_flow_mapping_says_to_quote_it():
    text = HEAD + "  - repeat: 2\n    layers:\n      - {name: s${i}_conv, type: conv, filters: 4, kernel: 1}\n"
    assert load_errors(text) == [
        "spec.yaml:6:16: YAML: s${i}_conv must be quoted inside {...} or [...] — YAML reads the '{' of '${' as"
        ' the start of a mapping; write "s${i}_conv"'
    ]
    flow_list = HEAD + "  - repeat: 2\n    layers:\n      - {type: conv, filters: 4, kernel: [${i}, 1]}\n"
    (line,) = load_errors(flow_list)
    assert line.startswith("spec.yaml:6:43: YAML: ${i} must be quoted inside {...} or [...]")


def test_a_problem_of_a_repeated_layer_is_reported_once():
    text = HEAD + "  - repeat: 4\n    layers:\n      - {type: conv, filters: 4, kernal: 1}\n"
    assert load_errors(text) == [
        "spec.yaml:6:9: layers[0].layers[0] (conv1): missing required 'kernel'"
        " — expected a positive integer or [height, width]",
        "spec.yaml:6:34: layers[0].layers[0] (conv1): unknown key 'kernal' for conv — did you mean 'kernel'?",
    ]


def test_distinct_problems_are_all_kept():
    text = HEAD + "  - repeat: 2\n    vars: {f: [0, -1]}\n    layers:\n      - {type: conv, filters: $f, kernel: 1}\n"
    assert len(load_errors(text)) == 2  # the values differ, so the messages do


def test_spec_error_drops_only_exact_repeats_of_position_path_and_message():
    pos = SourcePos("s.yaml", 3, 4)
    same = [Diagnostic(pos, "layers[0]", "bad", "conv1"), Diagnostic(pos, "layers[0]", "bad", "conv2")]
    other = [Diagnostic(pos, "layers[1]", "bad", "conv3"), Diagnostic(pos, "layers[0]", "worse", "conv1")]
    assert SpecError(same + other).diagnostics == [same[0], *other]
