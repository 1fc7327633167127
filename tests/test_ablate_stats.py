"""The ablation report's statistics: runs that failed to train are flagged and left out of
the means, and each pair of variants gets a verdict against the seed-to-seed spread.
Expected values are computed here by hand (and t quantiles from printed tables)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from specc.ablate import report as ablate_report
from specc.ablate.plan import Task
from specc.ablate.stats import compare, failed_to_train, t_quantile_975
from specc.ablate.variants import Variant
from specc.shapes import infer
from specc.spec import load_graph_text


@pytest.mark.parametrize("df, table", [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042), (1000, 1.962)])
def test_t_quantiles_match_the_printed_table(df, table):
    assert t_quantile_975(df) == pytest.approx(table, abs=1e-3)


def test_a_seed_far_above_its_group_failed_to_train():
    # The cpu preset's runs with the paper's ReLU on the class scores (test error, 3 seeds).
    assert failed_to_train([0.1773, 0.1691, 0.3701]) == [False, False, True]
    assert failed_to_train([0.1655, 0.5332, 0.1867]) == [False, True, False]
    assert failed_to_train([0.2008, 0.2015, 0.2023]) == [False, False, False]
    assert failed_to_train([0.18, 0.40]) == [False, False]  # two runs: no telling which
    assert failed_to_train([0.180, 0.181, 0.182, 0.215]) == [False, False, False, False]  # 3 points: spread


def test_welch_verdicts():
    a, b = [0.10, 0.11, 0.12], [0.20, 0.21, 0.22]
    result = compare(a, b)
    se = math.sqrt(0.0001 / 3 + 0.0001 / 3)  # both sample variances are 1e-4; df = 4
    assert result["difference"] == pytest.approx(-0.10)
    assert result["threshold"] == pytest.approx(2.7764 * se, rel=1e-3)
    assert result["verdict"] == "exceeds spread"
    assert compare([0.10, 0.14, 0.12], [0.13, 0.11, 0.15])["verdict"] == "within spread"
    assert compare([0.1], [0.2, 0.3])["verdict"] == "one seed: no spread"


TINY = """
name: tiny
input: {channels: 1, size: 4}
classes: 2
layers:
  - {type: conv, filters: 2, kernel: 3}
  - {type: global_avg_pool}
"""


def _report(errors: dict[str, list[float]]) -> dict:
    graph = load_graph_text(TINY, "tiny.yaml")
    variants = [Variant(name, f"tiny ({name})", graph, infer(graph), ()) for name in errors]
    tasks, results = [], {}
    for name, values in errors.items():
        for seed, error in enumerate(values):
            task = Task(name, 0.1, seed, Path(f"/nonexistent/{name}/{seed}"), "", "k", {})
            tasks.append(task)
            results[task.name] = {
                "variant": name,
                "lr": 0.1,
                "seed": seed,
                "status": "done",
                "test_error": error,
                "val_error": error,
                "seconds": 1.0,
            }
    settings = {"select": "val", "dataset": "synthetic", "seeds": 3, "lrs": [0.1], "val_split": 0.1}
    return ablate_report.build("tiny", variants, tasks, results, settings)


def test_report_leaves_out_a_failed_run_names_it_and_compares_the_rest():
    report = _report({"base": [0.1773, 0.1691, 0.3701], "all": [0.1814, 0.1829, 0.1839]})
    base, every = report["rows"]
    assert base["failed_seeds"] == [2] and every["failed_seeds"] == []
    assert base["test_error_pct"] == round(100 * statistics.fmean([0.1773, 0.1691]), 2)  # 17.32, not 23.88
    assert [r["failed_to_train"] for r in report["runs"]] == [False, False, True, False, False, False]
    (pair,) = report["comparisons"]
    expected = compare([0.1773, 0.1691], [0.1814, 0.1829, 0.1839])
    assert (pair["first"], pair["second"]) == ("base", "all")
    assert pair["difference_pct"] == round(100 * (statistics.fmean([0.1773, 0.1691]) - 0.18273333), 2)
    assert pair["verdict"] == expected["verdict"] == "within spread"
    settings_text = {"recipe_text": "r", "preset": None, "transforms": []}
    text = ablate_report.markdown(report | settings_text)
    assert "| tiny (base) | 17.32 ± 0.58 (without seed 2: failed to train) |" in text
    assert "- tiny (base) lr 0.1 seed 2: test error 37.01%" in text
    assert "| tiny (base) | tiny (all) | -0.95 |" in text
