"""`specc transform` through `specc.cli.main`: stdin and files, -o, --diff, exit codes."""

from __future__ import annotations

import io
import os
import sys

import pytest

from specc.cli import main
from specc.spec import load_graph, load_graph_text
from tests.conftest import SPECS
from tests.transforms_helpers import structure

MODEL_C = str(SPECS / "model_c.yaml")


def feed_stdin(monkeypatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def test_prints_canonical_yaml_that_check_accepts(capsys):
    assert main(["transform", MODEL_C, "--replace-pooling", "conv"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("# yaml-language-server: $schema=../docs/spec.schema.json\nname: model_c\n")
    assert "  - {name: pool1_conv, type: conv, filters: 96, stride: 2}\n" in out
    graph = load_graph_text(out, "<out>")
    assert structure(graph) == structure(load_graph(SPECS / "allcnn_c.yaml"))


@pytest.mark.parametrize("argv", [["transform", "-"], ["transform"]])
def test_reads_stdin_named_or_piped(monkeypatch, capsys, argv):
    feed_stdin(monkeypatch, (SPECS / "model_c.yaml").read_text())
    assert main([*argv, "--replace-pooling", "strided"]) == 0
    out = capsys.readouterr().out
    assert "  - {name: conv2, type: conv, filters: 96, stride: 2}\n" in out
    # ... and the output pipes into the next command.
    feed_stdin(monkeypatch, out)
    assert main(["summary", "-"]) == 0
    assert "parameters:                 954,730" in capsys.readouterr().out


def test_diff_lists_changes_and_totals(capsys):
    assert main(["transform", MODEL_C, "--replace-pooling", "conv", "--diff"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "model_c: replace_pooling=conv"
    assert lines[1] == "layers: 14 → 14 (2 added, 2 removed, 0 changed)"
    marks = [(line.split()[0], line.split()[1]) for line in lines[3:7]]
    assert marks == [("-", "pool1"), ("+", "pool1_conv"), ("-", "pool2"), ("+", "pool2_conv")]
    assert "  parameters           954,730  →    1,369,738     (+415,008)" in lines
    assert any(line.split()[:2] == ["receptive", "field"] for line in lines)
    assert "name:" not in out  # the diff replaces the spec on stdout


def test_output_file_is_written_atomically_and_not_overwritten(tmp_path, capsys):
    out = tmp_path / "allcnn.yaml"
    assert main(["transform", MODEL_C, "--replace-pooling", "conv", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"wrote {out} (model_c after replace_pooling=conv: 1,369,738 parameters)" in captured.err
    assert main(["check", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["allcnn.yaml"]  # no temp file left
    capsys.readouterr()
    assert main(["transform", MODEL_C, "--replace-pooling", "strided", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"error: -o {out}: file exists (use --force to overwrite)\n"
    assert "pool1_conv" in out.read_text()
    assert main(["transform", MODEL_C, "--replace-pooling", "strided", "-o", str(out), "--force"]) == 0
    assert "pool1_conv" not in out.read_text()
    assert oct(os.stat(out).st_mode & 0o777) != oct(0o600)


def test_refusal_exits_2_with_located_message(write_spec, capsys):
    path = write_spec(
        "name: r\ninput: {channels: 3, size: 8}\nclasses: 2\nlayers:\n"
        "  - {type: max_pool, kernel: 2}\n  - {type: conv, filters: 2, kernel: 1}\n  - {type: global_avg_pool}\n"
    )
    assert main(["transform", path, "--replace-pooling", "strided"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"{path}:5:5: layers[0] (pool1): transform replace_pooling=strided: cannot rewrite pool1:"
        " its input is the network input, not a conv (--skip-unsupported leaves it in place)\n"
    )
    assert main(["transform", path, "--replace-pooling", "strided", "--skip-unsupported"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{path}:5:5: warning: layers[0] (pool1): transform replace_pooling=strided: left")
    assert "- {name: pool1, type: max_pool, kernel: 2}" in captured.out


def test_flags_compose_in_command_line_order(capsys):
    assert main(["transform", MODEL_C, "--classes", "100", "--replace-pooling", "conv", "--diff"]) == 0
    assert capsys.readouterr().out.startswith("model_c: classes=100, replace_pooling=conv\n")
    assert main(["transform", MODEL_C, "--replace-pooling", "conv", "--classes", "100", "--diff"]) == 0
    assert capsys.readouterr().out.startswith("model_c: replace_pooling=conv, classes=100\n")


def test_input_retarget_refusal_names_the_layer(capsys):
    assert main(["transform", MODEL_C, "--input", "1x8x8"]) == 2
    assert capsys.readouterr().err == (
        f"{MODEL_C}:19:5: layers[9] (conv5): transform input=1x8x8:"
        " 3x3 valid conv on a 2x2 input: (2 - 3)/1 + 1 = 0 — expected an output of at least 1x1\n"
    )


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        ([MODEL_C], "error: no transform given — use one of --replace-pooling"),
        ([MODEL_C, "--replace-stride", "maxpool", "--weights", "x.pt"], "error: --weights and --weights-out go"),
        (["/no/such.yaml", "--fc-to-conv"], "error: /no/such.yaml: no such file"),
    ],
)
def test_user_errors_exit_2(capsys, argv, err):
    assert main(["transform", *argv]) == 2
    assert capsys.readouterr().err.startswith(err)


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        (["--replace-pooling", "avg"], "argument --replace-pooling: invalid choice: 'avg'"),
        (["--width-mult", "half"], "argument --width-mult: 'half' is not a number"),
        (["--input", "28"], "argument --input: input '28': expected CxHxW"),
    ],
)
def test_bad_flag_values_are_usage_errors(capsys, argv, err):
    with pytest.raises(SystemExit) as info:
        main(["transform", MODEL_C, *argv])
    assert info.value.code == 2
    assert err in capsys.readouterr().err


def test_list_prints_the_table(capsys):
    assert main(["transform", "--list"]) == 0
    out = capsys.readouterr().out
    for flag in ("--replace-pooling {strided,conv,convpool}", "--replace-stride", "--width-mult F", "--fc-to-conv"):
        assert flag in out
    assert "why: The paper's central experiment" in out
