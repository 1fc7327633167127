"""The CLI's manners: 'did you mean', shell completion, --json and --set everywhere, the
summary's inputs and options, and `specc check` naming the file a warning belongs to."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from specc.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
MODEL_C = str(ROOT / "specs" / "model_c.yaml")


def usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err.rstrip("\n")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# -- did you mean --------------------------------------------------------------------------


def test_unknown_command_suggests_the_closest(capsys):
    assert usage_error(capsys, "summry") == "error: specc: unknown command 'summry' — did you mean 'summary'?"
    assert usage_error(capsys, "xyzzy") == "error: specc: unknown command 'xyzzy' (see `specc --help`)"


def test_misspelt_option_and_choice_suggest_the_closest(capsys):
    err = usage_error(capsys, "check", MODEL_C, "--formt", "json")
    assert err == "error: specc check: unrecognized option '--formt' — did you mean '--format'?"
    err = usage_error(capsys, "check", MODEL_C, "--format", "jsn")
    assert err == "error: specc check: argument --format: invalid choice: 'jsn' — did you mean 'json'?"
    err = usage_error(capsys, "fmt", "--chek", MODEL_C)
    assert err == "error: specc fmt: unrecognized option '--chek' — did you mean '--check'?"


def test_the_installed_command_says_it_too():
    run = subprocess.run(["specc", "summry"], capture_output=True, text=True, check=False)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "error: specc: unknown command 'summry' — did you mean 'summary'?\n"


# -- completion ----------------------------------------------------------------------------


def script(capsys, shell: str) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def test_bash_script_is_valid_and_complete(capsys, tmp_path):
    text = script(capsys, "bash")
    path = tmp_path / "specc.bash"
    path.write_text(text)
    subprocess.run(["bash", "-n", str(path)], check=True)
    commands = subcommands()
    assert {"check", "summary", "fmt", "train", "completion"} <= set(commands)
    for name in commands:
        assert f"        {name})" in text
    for flag in (f for a in commands["train"]._actions for f in a.option_strings):
        assert flag in text


def bash_complete(script_path: Path, words: list[str], cwd: Path) -> list[str]:
    """What bash offers for the last of `words`, by calling the function as bash would."""
    array = " ".join(f"'{w}'" for w in words)
    program = f'source {script_path}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _specc; printf "%s\\n" "${{COMPREPLY[@]}}"'
    run = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, cwd=cwd)
    return sorted(line for line in run.stdout.splitlines() if line)


def test_bash_completes_commands_options_choices_and_files(capsys, tmp_path):
    path = tmp_path / "specc.bash"
    path.write_text(script(capsys, "bash"))
    (tmp_path / "net.yaml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert bash_complete(path, ["specc", "summ"], tmp_path) == ["summary"]
    assert bash_complete(path, ["specc", "check", "--form"], tmp_path) == ["--format"]
    assert bash_complete(path, ["specc", "check", "--format", ""], tmp_path) == ["github", "json", "text"]
    assert bash_complete(path, ["specc", "compile", "--target", "o"], tmp_path) == ["onnx"]
    assert bash_complete(path, ["specc", "check", "ne"], tmp_path) == ["net.yaml"]
    assert bash_complete(path, ["specc", "completion", ""], tmp_path) == ["bash", "fish", "zsh"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_parse(capsys, tmp_path, shell):
    text = script(capsys, shell)
    for name in subcommands():
        assert re.search(rf"\b{name}\b", text)
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed here: the script is checked for content only")
    path = tmp_path / f"specc.{shell}"
    path.write_text(text)
    subprocess.run([shell, "-n", str(path)], check=True)


def test_fish_completes_options_and_choices(capsys, tmp_path):
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed here")
    path = tmp_path / "specc.fish"
    path.write_text(script(capsys, "fish"))

    def offered(line: str) -> list[str]:
        program = f"source {path}; complete -C '{line}'"
        run = subprocess.run(["fish", "-c", program], capture_output=True, text=True, check=True)
        return sorted(row.split("\t")[0] for row in run.stdout.splitlines())

    assert offered("specc summ") == ["summary"]
    assert offered("specc check --format ") == ["github", "json", "text"]


# -- --json and --set on every command -----------------------------------------------------

# Commands whose output is not a result to parse.
NO_JSON = {"schema": "prints JSON already", "completion": "prints a shell script"}


def test_every_command_that_prints_results_has_json():
    missing = [
        name
        for name, sub in subcommands().items()
        if name not in NO_JSON
        if "--json" not in {f for a in sub._actions for f in a.option_strings}
    ]
    assert missing == []


def test_every_command_that_reads_a_spec_has_set():
    reads_spec = {
        name
        for name, sub in subcommands().items()
        if any(a.metavar == "SPEC" and not a.option_strings for a in sub._actions)
    }
    assert {"check", "summary", "fmt", "transform", "compile", "eval", "visualize", "ablate", "train"} <= reads_spec
    for name in reads_spec:
        assert "--set" in {f for a in subcommands()[name]._actions for f in a.option_strings}, name
    # schema reads no spec, and says so
    assert "reads none: no SPEC argument and no --set" in subcommands()["schema"].description


def test_transform_json_is_one_document_with_the_diff(capsys):
    assert main(["transform", MODEL_C, "--replace-pooling", "conv", "--json"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    # a 3x3 conv of 96 -> 96 channels with bias replaces pool1: 96*96*9 + 96 parameters
    added = {row["layer"]: row["params"] for row in doc["diff"] if row["change"] == "+"}
    assert added == {"pool1_conv": 96 * 96 * 9 + 96, "pool2_conv": 192 * 192 * 9 + 192}
    assert doc["totals"]["params"][1] - doc["totals"]["params"][0] == sum(added.values())
    assert [layer["name"] for layer in doc["spec"]["layers"]].count("pool1_conv") == 1


def test_compile_json_lists_the_files_with_their_sizes(capsys, tmp_path):
    out_dir = tmp_path / "build"
    assert main(["compile", MODEL_C, "--target", "torch", "-o", str(out_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["wrote"] == [{"path": str(out_dir / "model_c.py"), "bytes": os.path.getsize(out_dir / "model_c.py")}]
    assert doc["summary"]["total_params"] == 1_369_738 - 415_008  # Model C: ALL-CNN-C less the two pool convs


# -- summary: connected to, options --------------------------------------------------------

RESIDUAL = """\
name: res
input: {channels: 2, size: 8}
layers:
  - {name: a, type: conv, filters: 4, kernel: 3, padding: same, groups: 2, dilation: 2}
  - {name: b, type: avg_pool, kernel: 3, stride: 1, padding: 1, count_include_pad: true, ceil_mode: true}
  - {name: s, type: add, inputs: [a, b]}
"""


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in ("layer", "input", "a", "b", "s", "conv1", "pool1"):
            rows[cells[0]] = cells
    return rows


def test_summary_shows_inputs_and_options_that_change_the_numbers(capsys, tmp_path):
    spec = tmp_path / "res.yaml"
    spec.write_text(RESIDUAL)
    assert main(["summary", str(spec)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows["layer"] == ["layer", "type", "details", "output", "params", "MACs", "RF", "jump", "connected to"]
    # grouped conv: 4 filters x (2/2 channels) x 3x3 + 4 biases = 40; dilation 2 spans 5x5
    assert rows["a"] == ["a", "conv", "3x3 same dilation=2 groups=2", "4x8x8", "40", "2,304", "5", "1", "input"]
    assert rows["b"] == ["b", "avg_pool", "3x3 pad 1 ceil count_include_pad=true", "4x8x8", "0", "0", "7", "1", "a"]
    assert rows["s"][-2:] == ["a, b", "<- output"]
    assert main(["summary", str(spec), "--json"]) == 0
    layers = {layer["name"]: layer for layer in json.loads(capsys.readouterr().out)["layers"]}
    assert layers["s"]["inputs"] == ["a", "b"]
    assert layers["a"]["options"] == {"dilation": 2, "groups": 2}
    assert layers["b"]["options"] == {"count_include_pad": True}


def test_a_chain_has_no_connected_to_column(capsys):
    assert main(["summary", MODEL_C]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows["layer"][-1] == "jump" and rows["pool1"][:3] == ["pool1", "max_pool", "3x3/2 same"]


# -- check: a warning under the file whose layer it is -------------------------------------

BASE = """\
name: base
input: {channels: 1, size: 8}
classes: 3
layers:
  - {name: conv1, type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {name: conv2, type: conv, filters: 3, kernel: 1, activation: relu}
  - {type: global_avg_pool}
  - {type: softmax}
"""


def test_check_attributes_an_inherited_warning_to_the_derived_file(capsys, tmp_path):
    base, wide, patched = tmp_path / "base.yaml", tmp_path / "wide.yaml", tmp_path / "patched.yaml"
    base.write_text(BASE)
    wide.write_text("base: base.yaml\nname: wide\nlayers:\n  conv1: {filters: 8}\n")
    patched.write_text("base: base.yaml\nname: patched\nlayers:\n  conv2: {kernel: 1, filters: 3}\n")
    assert main(["check", str(base), str(wide), str(patched)]) == 0
    lines = capsys.readouterr().err.splitlines()
    relu = "warning: layers[1] (conv2): ReLU on the final class scores"
    # the base's own, at its conv2 (line 6, column 5); the derived ones at their base: line
    # (wide does not touch conv2) and where patched names conv2 (line 4, column 3)
    assert [line.split(": ReLU")[0] + ": ReLU" for line in lines] == [
        f"{base}:6:5: {relu.removesuffix(' on the final class scores')}",
        f"{wide}:1:1: {relu.removesuffix(' on the final class scores')}",
        f"{patched}:4:3: {relu.removesuffix(' on the final class scores')}",
    ]
    assert lines[0].endswith("activation: none)")
    assert lines[1].endswith(f"(inherited from {base}:6:5)") and lines[2].endswith(f"(inherited from {base}:6:5)")
    assert main(["check", str(wide), "--json"]) == 0
    (diagnostic,) = json.loads(capsys.readouterr().out)["specs"][0]["diagnostics"]
    assert (diagnostic["file"], diagnostic["line"], diagnostic["col"]) == (str(wide), 1, 1)
