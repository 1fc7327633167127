"""Numbers in exponent form (`1e-3`) are numbers, as in JSON and YAML 1.2 — in a spec, in a
`--set` value and in a flag like `--lr 1e-5` (PyYAML alone reads them as strings)."""

from __future__ import annotations

import pytest

from specc.spec import load_graph_text
from specc.training.config import recipe_of

SPEC = """\
name: t
input: {channels: 1, size: 8}
classes: 2
layers:
  - {type: conv, filters: 2, kernel: 3}
  - {type: global_avg_pool}
train: {lr: 1e-3, weight_decay: 5E-4, min_lr: 1.5e-6}
"""


def test_exponent_floats_in_a_spec_are_numbers():
    cfg = recipe_of(load_graph_text(SPEC, "t.yaml").train)
    assert (cfg.lr, cfg.weight_decay, cfg.min_lr) == (0.001, 0.0005, 1.5e-06)


@pytest.mark.parametrize("text, value", [("1e-4", 0.0001), ("2E-2", 0.02), ("+3e1", 30.0)])
def test_exponent_floats_in_set_values_are_numbers(text, value):
    graph = load_graph_text(SPEC, "t.yaml", [f"train.lr={text}"])
    assert recipe_of(graph.train).lr == value


def test_lr_flag_in_exponent_form_trains(tmp_path, capsys):
    from tests.train.train_helpers import TINY, run_cli, write

    spec = write(tmp_path, TINY)
    assert run_cli("train", spec, "--lr", "1e-5", "--max-steps", "1", "--out", str(tmp_path / "r")) == 0
    assert "lr 1e-05" in capsys.readouterr().out


def test_text_that_only_looks_like_a_number_stays_text():
    graph = load_graph_text(SPEC.replace("name: t", "name: t\ndescription: 1e5x"), "t.yaml")
    assert graph.description == "1e5x"
