"""`specc check --json` (diagnostics as objects) and `--format github` (workflow annotations)."""

from __future__ import annotations

import json
from pathlib import Path

from specc.cli import main

ROOT = Path(__file__).resolve().parents[1]
BAD = (
    "name: t\ninput: {channels: 3, size: 8}\nclasses: 10\nlayers:\n"
    "  - {name: c1, type: conv, filters: 4, kernel: 3, stride: 4}\n"
    "  - {name: c2, type: conv, filters: 10, kernel: 3}\n"
)


def test_json_lists_every_spec_and_diagnostic(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    good = ROOT / "specs" / "allcnn_c.yaml"
    assert main(["check", str(bad), str(good), "--json"]) == 2
    out = capsys.readouterr()
    assert out.err == ""  # everything is in the document
    doc = json.loads(out.out)
    assert doc["ok"] is False
    first, second = doc["specs"]
    assert first == {
        "spec": str(bad),
        "ok": False,
        "diagnostics": [
            {
                "file": str(bad),
                "line": 6,
                "col": 5,
                "path": "layers[1]",
                "layer": "c2",
                "severity": "error",
                "message": "3x3 valid conv on a 2x2 input: (2 - 3)/1 + 1 = 0 — expected an output of at least 1x1",
            }
        ],
    }
    assert second["ok"] is True and second["params"] == 1_369_738 and second["layers"] == 14
    assert [d["severity"] for d in second["diagnostics"]] == ["warning"]


def test_github_annotations(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert main(["check", str(bad), "--format", "github"]) == 2
    assert capsys.readouterr().out.strip() == (
        f"::error file={bad},line=6,col=5::layers[1] (c2): 3x3 valid conv on a 2x2 input:"
        " (2 - 3)/1 + 1 = 0 — expected an output of at least 1x1"
    )
