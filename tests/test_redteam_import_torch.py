"""`specc import --torch` given hostile user code or inputs: one line, exit 2, nothing written."""

from __future__ import annotations

from tests.redteam_helpers import refusal


def test_a_callable_that_calls_sys_exit_0_is_refused(tmp_path, capsys):
    module = tmp_path / "nets.py"
    module.write_text("import sys\n\ndef make():\n    sys.exit(0)\n")
    out = tmp_path / "m.yaml"
    line = refusal(["import", "--torch", f"{module}:make", "-o", str(out)], capsys)
    assert line == f"error: --torch {module}:make: calling make() fails: SystemExit: 0"
    assert not out.exists() and not out.with_suffix(".pt").exists()


def test_an_input_too_large_to_trace_is_refused_before_any_allocation(tmp_path, capsys):
    module = tmp_path / "nets.py"
    module.write_text("raise RuntimeError('the module must not even be imported')\n")
    line = refusal(
        ["import", "--torch", f"{module}:make", "--input", "3x100000x100000", "-o", str(tmp_path / "m.yaml")], capsys
    )
    assert line == "error: --input 3x100000x100000: 30000000000 values per image — at most 134217728 (512 MiB)"


def test_a_forward_that_calls_sys_exit_is_refused(tmp_path, capsys):
    module = tmp_path / "nets.py"
    module.write_text(
        "import sys\nimport torch\n\nclass Quit(torch.nn.Module):\n    def forward(self, x):\n        sys.exit(0)\n"
    )
    out = tmp_path / "m.yaml"
    line = refusal(["import", "--torch", f"{module}:Quit", "--input", "3x4x4", "-o", str(out)], capsys)
    assert line == f"error: --torch {module}:Quit: torch.onnx.export fails: the model called sys.exit(0)"
    assert not out.exists()
