"""Networks that are not classifiers (issue #11): `classes:` optional, `outputs:` lists the
layers a network returns. The spec language, shapes, lint, summary and canonical YAML; the
backends are tests/test_outputs_backends.py."""

from __future__ import annotations

import json

import pytest
from outputs_specs import BACKBONE

import specc
from specc.cli import main
from specc.emit import to_yaml
from specc.errors import SpecError, UserError
from specc.outputs import describe_outputs, output_mode_problem, require_classifier
from specc.spec import load_graph_text

HEAD = "name: t\ninput: {channels: 3, size: 8}\n"
SEGMENTER = """name: seg
input: {channels: 3, size: 16}
layers:
  - {type: conv, filters: 8, kernel: 3, padding: same, activation: relu}
  - {type: conv, filters: 4, kernel: 1}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        specc.check(load_graph_text(text, "spec.yaml"))
    return [d.format() for d in err.value.diagnostics]


def load_errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_graph_text(text, "spec.yaml")
    return [d.format() for d in err.value.diagnostics]


# -- classes optional -----------------------------------------------------------------
def test_without_classes_the_output_is_the_last_layers_feature_map():
    result = specc.check(load_graph_text(SEGMENTER, "seg.yaml"))
    assert result.graph.classes is None and not result.graph.is_classifier
    assert result.report.output_shape == (4, 16, 16)
    assert describe_outputs(result.report) == "output conv2 4x16x16"
    assert result.warnings == ()  # a ReLU before a feature map is no trap


def test_with_classes_the_feature_map_check_stays_and_says_how_to_opt_out():
    text = HEAD + "classes: 10\nlayers:\n  - {type: conv, filters: 10, kernel: 1}\n"
    assert errors(text) == [
        "spec.yaml:5:5: layers[0] (conv1): the network ends in a 10x8x8 feature map — expected 10 class scores;"
        " add a global_avg_pool (or flatten + linear) to reach the class scores, or drop classes: for a network"
        " that outputs a feature map"
    ]


def test_labels_without_classes_are_refused():
    text = HEAD + "labels: [a, b]\nlayers:\n  - {type: conv, filters: 2, kernel: 1}\n"
    assert load_errors(text) == [
        "spec.yaml:3:9: labels: 2 labels but no classes — labels name class scores: add 'classes: 2' (or remove labels)"
    ]


def test_labels_must_still_match_classes():
    text = HEAD + "classes: 3\nlabels: [a, b]\nlayers:\n  - {type: global_avg_pool}\n"
    assert load_errors(text) == ["spec.yaml:4:9: labels: 2 labels for 3 classes — expected one label per class"]


# -- outputs: located errors ----------------------------------------------------------
def test_outputs_name_existing_distinct_layers_all_errors_at_once():
    text = (
        HEAD
        + "outputs: [stage1, stag2, stage1, input]\nlayers:\n"
        + "  - {name: stage1, type: conv, filters: 4, kernel: 1}\n  - {name: stage2, type: conv, filters: 4, kernel: 1}\n"
    )
    assert load_errors(text) == [
        "spec.yaml:3:19: outputs[1]: no layer named 'stag2' — did you mean 'stage2'?",
        "spec.yaml:3:26: outputs[2]: 'stage1' is listed twice (first as outputs[0]) — list each layer once",
        "spec.yaml:3:34: outputs[3]: 'input' is the network input — expected the name of a layer",
    ]


def test_outputs_errors_come_with_the_other_errors_of_the_file():
    text = HEAD + "outputs: [nope]\nlayers:\n  - {type: conv, filters: 4, kernal: 1}\n"
    assert errors(text) == [
        "spec.yaml:5:5: layers[0] (conv1): missing required 'kernel' — expected a positive integer or [height, width]",
        "spec.yaml:5:30: layers[0] (conv1): unknown key 'kernal' for conv — did you mean 'kernel'?",
        "spec.yaml:3:11: outputs[0]: no layer named 'nope'",
    ]


def test_an_empty_outputs_list_is_refused():
    text = HEAD + "outputs: []\nlayers:\n  - {type: relu}\n"
    assert load_errors(text) == [
        "spec.yaml:3:10: outputs = []: list should have at least 1 item after validation, not 0"
        " — expected a list of layer names: the network's outputs, in order (default: the last layer)"
    ]


def test_classes_apply_to_the_last_listed_output():
    text = (
        HEAD
        + "classes: 3\noutputs: [stage2, stage1]\nlayers:\n"
        + "  - {name: stage1, type: conv, filters: 3, kernel: 1}\n  - {name: stage2, type: conv, filters: 4, kernel: 1}\n"
    )
    assert errors(text) == [
        "spec.yaml:6:5: layers[0] (stage1): the last output, 'stage1', is a 3x8x8 feature map — expected 3 class"
        " scores; add a global_avg_pool (or flatten + linear) to reach the class scores"
    ]
    fixed = text.replace("[stage2, stage1]", "[stage2, gap1]") + "  - {type: global_avg_pool, inputs: stage1}\n"
    result = specc.check(load_graph_text(fixed, "spec.yaml"))
    assert result.graph.output.name == "gap1" and result.report.output_shapes == {"stage2": (4, 8, 8), "gap1": (3,)}
    assert describe_outputs(result.report) == "outputs stage2 4x8x8, gap1 3 (3 classes)"


def test_layers_feeding_no_output_get_the_unused_warning():
    text = (
        HEAD
        + "outputs: [a]\nlayers:\n  - {name: a, type: conv, filters: 4, kernel: 1}\n"
        + "  - {name: b, type: relu}\n  - {name: c, type: global_avg_pool}\n"
    )
    warnings = [d.format() for d in specc.check(load_graph_text(text, "spec.yaml")).warnings]
    assert warnings == [
        "spec.yaml:6:5: warning: layers[1] (b): output is never used (read only by layers that feed nothing,"
        " not listed in outputs:)",
        "spec.yaml:7:5: warning: layers[2] (c): output is never used (not an input of any layer, not listed in outputs:)",
    ]


# -- summary, check, fmt ---------------------------------------------------------------
def test_summary_marks_the_outputs_and_lists_their_shapes(capsys, tmp_path):
    (tmp_path / "bb.yaml").write_text(BACKBONE)
    assert main(["summary", str(tmp_path / "bb.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "backbone: input 3x16x16, outputs stage1 8x16x16, stage2 16x8x8, head 5"
    marked = [line.split()[0] for line in lines if line.endswith("<- output")]
    assert marked == ["stage1", "stage2", "head"]
    assert lines[-1] == "receptive field of output:  21 (head, the last output)"


def test_summary_json_lists_outputs(capsys, tmp_path):
    (tmp_path / "bb.yaml").write_text(BACKBONE)
    assert main(["summary", str(tmp_path / "bb.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["classes"] is None
    assert data["outputs"] == [
        {"name": "stage1", "output_shape": [8, 16, 16]},
        {"name": "stage2", "output_shape": [16, 8, 8]},
        {"name": "head", "output_shape": [5]},
    ]
    assert [layer["name"] for layer in data["layers"] if layer["is_output"]] == ["stage1", "stage2", "head"]


def test_summary_of_a_classless_spec(capsys, tmp_path):
    (tmp_path / "seg.yaml").write_text(SEGMENTER)
    assert main(["summary", str(tmp_path / "seg.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "seg: input 3x16x16, output conv2 4x16x16"
    assert main(["check", str(tmp_path / "seg.yaml")]) == 0
    assert capsys.readouterr().out.endswith("ok — seg, 260 parameters, 2 layers, output conv2 4x16x16\n")


def test_fmt_writes_outputs_and_no_classes():
    graph = load_graph_text(BACKBONE, "bb.yaml")
    text = to_yaml(graph)
    assert "classes" not in text and "outputs: [stage1, stage2, head]" in text.splitlines()
    again = load_graph_text(text, "<fmt>")
    assert again == graph and again.outputs == ("stage1", "stage2", "head")


def test_outputs_take_part_in_equality():
    graph = load_graph_text(BACKBONE, "bb.yaml")
    assert graph.replace(outputs=("stage1", "head")) != graph


# -- the refusals ------------------------------------------------------------------------
def test_require_classifier_names_the_spec_and_what_to_change():
    seg = load_graph_text(SEGMENTER, "seg.yaml")
    with pytest.raises(UserError) as err:
        require_classifier(seg, "specc train")
    assert str(err.value) == (
        "specc train needs class scores, but spec 'seg' (seg.yaml) has no classes — add 'classes: N' to the spec"
        " (its last layer must then give N scores)"
    )
    multi = load_graph_text(BACKBONE.replace("outputs:", "classes: 5\noutputs:"), "bb.yaml")
    with pytest.raises(UserError) as err:
        require_classifier(multi, "specc eval")
    assert str(err.value) == (
        "specc eval needs a single classifier output, but spec 'backbone' (bb.yaml) lists 3 outputs"
        " (stage1, stage2, head) — remove 'outputs:' from the spec (the last layer is then the output)"
    )
    assert require_classifier(specc.load("specs/allcnn_c.yaml"), "specc train") == 10


def test_probs_is_a_classifiers_choice_only():
    seg = load_graph_text(SEGMENTER, "seg.yaml")
    assert output_mode_problem(seg, "logits") is None
    assert output_mode_problem(seg, "probs") == (
        "output 'probs' turns a classifier's scores into probabilities, but spec 'seg' (seg.yaml) has no classes"
        " — its outputs are returned as computed (end one in a softmax layer for probabilities)"
    )
    assert output_mode_problem(specc.load("specs/allcnn_c.yaml"), "probs") is None


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "SPEC", "--data", "synthetic"],
        ["ablate", "SPEC", "--data", "synthetic"],
        ["visualize", "SPEC", "--class", "1", "--no-image", "-o", "OUT.png"],
    ],
    ids=lambda argv: argv[0],
)
def test_commands_that_need_classes_refuse_a_classless_spec_in_one_line(argv, tmp_path, capsys):
    spec = tmp_path / "seg.yaml"
    spec.write_text(SEGMENTER)
    args = [str(spec) if a == "SPEC" else str(tmp_path / a) if a == "OUT.png" else a for a in argv]
    what = {"train": "specc train", "ablate": "specc ablate", "visualize": "--class"}[argv[0]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {what} needs class scores, but spec 'seg' ({spec}) has no classes — add 'classes: N' to the spec"
        " (its last layer must then give N scores)\n"
    )


def test_train_refuses_several_outputs_in_one_line(tmp_path, capsys):
    spec = tmp_path / "bb.yaml"
    spec.write_text(BACKBONE.replace("outputs:", "classes: 5\noutputs:"))
    assert main(["train", str(spec), "--data", "synthetic"]) == 2
    assert capsys.readouterr().err == (
        f"error: specc train needs a single classifier output, but spec 'backbone' ({spec}) lists 3 outputs"
        " (stage1, stage2, head) — remove 'outputs:' from the spec (the last layer is then the output)\n"
    )


def test_transform_classes_refuses_a_classless_spec(tmp_path, capsys):
    spec = tmp_path / "seg.yaml"
    spec.write_text(SEGMENTER)
    assert main(["transform", str(spec), "--classes", "10"]) == 2
    assert capsys.readouterr().err == (
        f"{spec}:1:1: transform classes=10: spec 'seg' has no classes, so there is no class count to change"
        " — add 'classes: N' to the spec (its last layer giving N scores)\n"
    )


def test_lint_catches_a_graph_whose_outputs_name_no_layer():
    from specc.ir import lint

    graph = load_graph_text(BACKBONE, "bb.yaml")
    problems = [d.format() for d in lint(graph.replace(outputs=("stage1", "stage9", "stage1")))]
    assert problems == [
        "bb.yaml:5:1: outputs[1]: no layer named 'stage9' — did you mean 'stage2'?",
        "bb.yaml:5:1: outputs[2]: 'stage1' is listed twice",
    ]
