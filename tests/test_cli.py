"""The `specc` command: exit codes, streams, pipes, and a core that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import specc
from specc.cli import main
from tests.conftest import ROOT, SPECS

ALLCNN_C = str(SPECS / "allcnn_c.yaml")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"specc {specc.__version__}"


@pytest.mark.parametrize("command", ["check", "summary", "fmt", "schema"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"specc {command}" in out


def test_check_many(capsys):
    assert main(["check", ALLCNN_C, str(SPECS / "model_a.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("allcnn_c.yaml: ok — allcnn_c, 1,369,738 parameters, 14 layers, output 10 classes, 1 warning(s)")
    assert len(out) == 2


def test_check_exit_2_if_any_fails(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    assert main(["check", ALLCNN_C, str(bad)]) == 2
    captured = capsys.readouterr()
    assert "allcnn_c.yaml: ok" in captured.out
    assert f"{bad}:1:1: missing required 'input'" in captured.err


def test_summary_table(capsys):
    assert main(["summary", ALLCNN_C]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "allcnn_c: input 3x32x32, 10 classes"
    header = lines[2].split()
    assert header == ["layer", "type", "details", "output", "params", "MACs", "RF", "jump"]
    conv3 = next(line for line in lines if line.startswith("conv3 "))
    assert conv3.split() == ["conv3", "conv", "3x3/2", "same", "relu", "96x16x16", "83,040", "21,233,664", "7", "2"]
    assert "parameters:                 1,369,738" in out
    assert "receptive field of output:" in out


def test_summary_json(capsys):
    assert main(["summary", ALLCNN_C, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 1_369_738
    assert data["layers"][-3]["output_shape"] == [10, 6, 6]
    assert data["total_macs"] == sum(layer["macs"] for layer in data["layers"])


def test_schema_is_committed_and_current(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    committed = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    assert printed == committed, "run: specc schema > docs/spec.schema.json"
    assert set(printed["$defs"]["layer_conv"]["properties"]) >= {"filters", "kernel", "stride", "padding", "activation"}


def test_specs_point_to_the_schema():
    for path in SPECS.glob("*.yaml"):
        assert "# yaml-language-server: $schema=../docs/spec.schema.json" in path.read_text(), path.name


def test_schema_validates_the_specs():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    for path in SPECS.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_fmt_keeps_modeline_and_is_canonical(capsys):
    assert main(["fmt", ALLCNN_C]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# yaml-language-server: $schema=../docs/spec.schema.json\nname: allcnn_c\n")
    assert "  - {name: conv3, type: conv, filters: 96, stride: 2}" in out


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "specc.cli", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_pipe_fmt_into_summary_through_stdin():
    fmt = run_cli("fmt", "specs/allcnn_large.yaml")
    assert fmt.returncode == 0
    summary = run_cli("summary", "-", stdin=fmt.stdout)
    assert summary.returncode == 0, summary.stderr
    assert "parameters:                 77,455,690" in summary.stdout
    implicit = run_cli("check", stdin=fmt.stdout)
    assert implicit.returncode == 0 and implicit.stdout.startswith("<stdin>: ok")


def test_user_errors_exit_2_without_traceback():
    result = run_cli("summary", "specs/nothere.yaml")
    assert result.returncode == 2
    assert result.stderr == "error: specs/nothere.yaml: no such file\n"
    bad_args = run_cli("check", "--max-params", "lots")
    assert bad_args.returncode == 2 and "Traceback" not in bad_args.stderr


def test_core_commands_never_import_torch_or_onnx():
    code = (
        "import sys; from specc.cli import main; "
        "rc = main(['check', '-q', 'specs/allcnn_c.yaml']); "
        "main(['summary', 'specs/allcnn_c.yaml']); main(['schema']); main(['fmt', 'specs/allcnn_c.yaml']); "
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules]; "
        "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0
    assert "HEAVY []" in result.stderr
