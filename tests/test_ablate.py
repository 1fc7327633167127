"""`specc ablate`: variant derivation, planning and the report, on tiny synthetic runs.

The helpers at the top (a tiny spec with max-pooling, an in-process CLI run, a markdown
table parser) are shared with test_ablate_resume.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import specc
from specc.ablate import runner
from specc.ablate.ablation import Settings, prepare
from specc.ablate.report import build, markdown
from specc.ablate.variants import Skipped, Variant, derive
from specc.cli import main
from specc.spec import load_graph
from tests.conftest import SPECS
from tests.transforms_helpers import structure

# 3x8x8 input, 4 classes; one 3x3/2 max-pool, so every variant can be derived. A run of one
# epoch over 128 images takes a fraction of a second.
TINY_POOL = """\
name: tinypool
input: {channels: 3, size: 8}
classes: 4
defaults:
  conv: {kernel: 3, padding: same, activation: relu}
layers:
  - {type: conv, filters: 8}
  - {type: max_pool, kernel: 3, stride: 2, padding: same}
  - {type: conv, filters: 8}
  - {type: conv, filters: 4, kernel: 1, activation: none}
  - {type: global_avg_pool}
  - {type: softmax}
train:
  dataset: synthetic
  dataset_options: {size: 128}
  epochs: 1
  batch_size: 32
  schedule: cosine
"""
# The same without the pool: already all-convolutional, nothing to derive.
NO_POOL = TINY_POOL.replace("name: tinypool", "name: nopool").replace(
    "  - {type: max_pool, kernel: 3, stride: 2, padding: same}\n", ""
)


def write(tmp_path: Path, text: str = TINY_POOL, name: str = "tinypool.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def ablate(*args: str) -> int:
    """`specc ablate ARGS --threads 1` in this process (torch's thread count restored)."""
    threads = torch.get_num_threads()
    try:
        return main(["ablate", *args, "--threads", "1"])
    finally:
        torch.set_num_threads(threads)


def markdown_table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose first header cell is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(head, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def number(cell: str) -> float | None:
    """`1,428` -> 1428.0; `—` -> None."""
    return None if cell == "—" else float(cell.replace(",", ""))


def mean_std(cell: str) -> tuple[float, float | None]:
    """`61.52 ± 19.06` -> (61.52, 19.06); `61.52` -> (61.52, None)."""
    match = re.fullmatch(r"([\d.]+)(?: ± ([\d.]+))?", cell)
    assert match, cell
    return float(match.group(1)), (float(match.group(2)) if match.group(2) else None)


def mtimes(run_dir) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(run_dir.iterdir()) if p.is_file()}


def counting(monkeypatch) -> list[str]:
    """Record the name of every run `run_task` is asked to train."""
    called, real = [], runner.run_task

    def run_task(task):
        called.append(task.name)
        return real(task)

    monkeypatch.setattr(runner, "run_task", run_task)
    return called


# -- variants ------------------------------------------------------------------------------
PAPER_FILES = {"base": "model_c", "strided": "strided_cnn_c", "convpool": "convpool_cnn_c", "all": "allcnn_c"}


def test_variants_of_model_c_are_the_transforms_outputs_and_the_papers_networks():
    graph = load_graph(SPECS / "model_c.yaml")
    variants = derive(graph, ("base", "strided", "convpool", "all"))
    assert [v.label for v in variants] == ["Model C", "Strided-CNN-C", "ConvPool-CNN-C", "ALL-CNN-C"]
    rules = {"strided": "strided", "convpool": "convpool", "all": "conv"}
    for v in variants:
        assert isinstance(v, Variant)
        if v.name != "base":
            assert v.graph == specc.transform(graph, replace_pooling=rules[v.name]).graph
            assert v.steps == (f"replace_pooling={rules[v.name]}",)
        # ... and the same networks as the hand-written specs of Table 2.
        assert structure(v.graph) == structure(load_graph(SPECS / f"{PAPER_FILES[v.name]}.yaml"))
    assert [v.params for v in variants] == [954_730, 954_730, 1_369_738, 1_369_738]


def test_a_spec_without_pooling_skips_what_cannot_be_derived_with_the_reason(tmp_path):
    variants = derive(load_graph(write(tmp_path, NO_POOL)), ("base", "strided", "all"))
    assert isinstance(variants[0], Variant)
    assert [type(v) for v in variants[1:]] == [Skipped, Skipped]
    assert "no max_pool or avg_pool layer — nothing to replace" in variants[1].reason
    ablation = prepare(write(tmp_path, NO_POOL), Settings(variants=("base", "strided", "all"), lrs=(0.1,)))
    assert [t.variant for t in ablation.tasks] == ["base"]
    text = markdown(build("nopool", ablation.variants, ablation.tasks, {}, ablation.info))
    assert "| nopool (strided) | not derived |" in text
    assert "- nopool (all) cannot be derived: " in text and "nothing to replace" in text


def test_only_unpooled_variants_is_an_error(tmp_path, capsys):
    assert ablate(write(tmp_path, NO_POOL), "--variants", "strided,all", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no variant of nopool can be derived: strided: ")
    assert not (tmp_path / "o").exists()


def test_cpu_preset_narrows_and_retargets_model_c_before_deriving():
    ablation = prepare(str(SPECS / "model_c.yaml"), Settings(preset="cpu", threads=2))
    info = ablation.info
    assert (info["jobs"], info["threads_per_job"]) == (2, 1)  # one single-threaded job per core
    assert (info["dataset"], info["lrs"], info["epochs"], info["val_split"]) == ("fashion-mnist", [0.05, 0.02], 4, 0.1)
    assert info["transforms"] == ["input=1x28x28", "width_mult=0.25, round=8", "linear_scores"]
    variants = {v.name: v for v in ablation.variants}
    assert [variants[n].params for n in ("base", "strided", "convpool", "all")] == [60_274, 60_274, 86_266, 86_266]
    assert variants["base"].graph.input_shape == (1, 28, 28) and variants["base"].graph.labels is None
    for variant in variants.values():  # linear class scores in every variant
        assert variant.graph.nodes[-3].op.activation == "none"  # the 1x1 conv before pooling and softmax
    # The ALL-CNN variant is the repository's quarter-width Fashion-MNIST model, whose own
    # recipe turns dropout off for its short schedule (and, as the preset does, the ReLU on
    # the class scores): compare with the paper's dropout put back.
    paper = ["layers.drop1.rate=0.2", "layers.drop2.rate=0.5", "layers.drop3.rate=0.5"]
    fmnist = load_graph(SPECS / "allcnn_c_fmnist.yaml", paper).replace(labels=None, train=None)
    assert structure(variants["all"].graph)["layers"] == structure(fmnist)["layers"]
    assert len(ablation.tasks) == 8 and ablation.tasks[0].run_dir == Path(
        "runs/ablate-model_c-fashion-mnist/base/lr0.05/seed0"
    )


# -- CLI errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--variants", "base,allcnn"],
            "error: --variants base,allcnn: unknown variant 'allcnn' — did you mean 'all'? (known: base, strided, convpool, all)",
        ),
        (["--variants", "base,base"], "error: --variants base,base: a variant is named twice"),
        (["--lrs", "0.1,fast"], "error: --lrs 0.1,fast: 'fast' is not a number"),
        (["--lrs", "0.1,-0.05"], "error: --lrs 0.1,-0.05: learning rate -0.05 must be a number > 0"),
        (["--lrs", ","], "error: --lrs ',': expected a comma-separated list of learning rates, e.g. 0.1,0.05"),
        (["--seeds", "0"], "error: --seeds 0: expected a positive integer"),
        (
            ["--select", "val", "--val-split", "0"],
            "error: --select val needs a validation split: --val-split must be > 0 (e.g. 0.1)",
        ),
        (
            ["--data", "cifar10", "--set", "train.dataset_options={}"],
            "error: cifar10 gives 3x32x32 images in 10 classes but spec 'tinypool' expects 3x8x8 and 4 classes",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors_and_train_nothing(tmp_path, capsys, flags, message):
    assert ablate(write(tmp_path), *flags, "--out", str(tmp_path / "o")) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "o").exists()


def test_no_dataset_is_a_clear_error(tmp_path, capsys):
    spec = write(
        tmp_path, TINY_POOL.replace("  dataset: synthetic\n", "").replace("  dataset_options: {size: 128}\n", "")
    )
    assert ablate(spec, "--out", str(tmp_path / "o")) == 2
    assert capsys.readouterr().err.startswith("error: no dataset: pass --data NAME")


# -- a tiny real ablation ------------------------------------------------------------------
TINY_ARGS = ("--variants", "base,all", "--lrs", "0.1,0.05", "--seeds", "2")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """2 variants x 2 learning rates x 2 seeds, one epoch each, on synthetic data."""
    tmp = tmp_path_factory.mktemp("ablate")
    out = tmp / "out"
    code = ablate(write(tmp), *TINY_ARGS, "--out", str(out))
    assert code == 0
    return out


def test_report_files_and_run_layout(tiny_run):
    for name in ("report.md", "report.json", "error_vs_params.png"):
        assert (tiny_run / name).stat().st_size > 0
    assert (tiny_run / "error_vs_params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for variant in ("base", "all"):
        assert load_graph(tiny_run / variant / "spec.yaml").name == "tinypool"
        for lr in ("lr0.1", "lr0.05"):
            for seed in ("seed0", "seed1"):
                run = tiny_run / variant / lr / seed
                for name in ("config.yaml", "last.pt", "metrics.jsonl", "result.json", "train.log"):
                    assert (run / name).exists(), run / name
    report = json.loads((tiny_run / "report.json").read_text())
    assert len(report["runs"]) == 8 and {r["status"] for r in report["runs"]} == {"done"}
    assert report["select"] == "val" and report["val_split"] == 0.1
    assert "chosen on a validation split (0.1 of the training set, held out)" in (tiny_run / "report.md").read_text()
    assert [r["model"] for r in report["rows"]] == ["tinypool", "tinypool (all)"]
    assert [r["params"] for r in report["rows"]] == [844, 1428]


def test_markdown_numbers_equal_the_json(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    text = (tiny_run / "report.md").read_text()
    rows = markdown_table(text, "model")
    assert len(rows) == len(report["rows"]) == 2
    for cells, row in zip(rows, report["rows"]):
        assert cells["model"] == row["model"]
        assert mean_std(cells["test error %"]) == (row["test_error_pct"], row["test_error_std_pct"])
        assert number(cells["val error %"]) == row["val_error_pct"]
        assert number(cells["val-chosen lr"]) == row["best_lr"]
        assert number(cells["params"]) == row["params"]
        assert number(cells["MACs"]) == row["macs"]
        assert number(cells["train time / run (s)"]) == row["train_seconds"]
    search = markdown_table(text.split("## Learning-rate search")[1], "model")
    assert len(search) == len(report["lr_search"]) == 4
    for cells, entry in zip(search, report["lr_search"]):
        assert number(cells["lr"]) == entry["lr"]
        assert number(cells["val error %"]) == entry["val_error_pct"]
        assert mean_std(cells["test error %"]) == (entry["test_error_pct"], entry["test_std_pct"])


def test_the_chosen_lr_has_the_lowest_mean_validation_error_and_its_test_error_is_reported(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    for row in report["rows"]:
        runs = [r for r in report["runs"] if r["variant"] == row["variant"]]
        by_lr = {lr: [r for r in runs if r["lr"] == lr] for lr in report["lrs"]}
        val = {lr: sum(r["val_error"] for r in rs) / len(rs) for lr, rs in by_lr.items()}
        assert row["best_lr"] == min(val, key=val.get)
        chosen = [100 * r["test_error"] for r in by_lr[row["best_lr"]]]
        assert row["test_error_pct"] == round(sum(chosen) / 2, 2)
        assert row["test_error_std_pct"] == round(float(torch.tensor(chosen).std()), 2)


def test_test_error_is_the_last_epochs(tiny_run):
    run = tiny_run / "all" / "lr0.1" / "seed0"
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    result = json.loads((run / "result.json").read_text())
    assert result["test_error"] == pytest.approx(1 - last["test_acc"])
    assert result["val_error"] == pytest.approx(1 - last["val_acc"])


def test_paper_figures_appear_for_cifar10_only(tiny_run, tmp_path):
    report = json.loads((tiny_run / "report.json").read_text())
    assert "paper" not in (tiny_run / "report.md").read_text()
    # The same numbers as if model C had been trained on CIFAR-10 (no training involved).
    ablation = prepare(str(SPECS / "model_c.yaml"), Settings(data="cifar10", lrs=(0.1, 0.05), seeds=2))
    results = {}
    for task, run in zip(ablation.tasks, [r for r in report["runs"] for _ in (0, 1)]):
        results[task.name] = run
    text = markdown(build("model_c", ablation.variants, ablation.tasks, results, ablation.info))
    rows = markdown_table(text, "model")
    assert [r["model"] for r in rows] == ["Model C", "Strided-CNN-C", "ConvPool-CNN-C", "ALL-CNN-C"]
    assert [r["paper error % (CIFAR-10)"] for r in rows] == ["9.74", "10.19", "9.31", "9.08"]
    assert [r["paper params"] for r in rows] == ["954,730", "954,730", "1,369,738", "1,369,738"]


def test_a_finished_ablation_is_not_trained_again(tiny_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run, out)
    from specc.ablate import runner

    monkeypatch.setattr(runner, "run_task", lambda task: pytest.fail(f"{task.name} was trained again"))
    capsys.readouterr()
    assert (
        ablate(write(tmp_path), "--variants", "base,all", "--lrs", "0.1,0.05", "--seeds", "2", "--out", str(out)) == 0
    )
    captured = capsys.readouterr()
    assert "= 8 runs (8 done, 0 to resume, 0 to train)" in captured.err
    assert captured.out == (out / "report.md").read_text()
    before = json.loads((tiny_run / "report.json").read_text())
    after = json.loads((out / "report.json").read_text())
    assert after["rows"] == before["rows"]


def test_another_recipe_in_the_same_directory_is_refused(tiny_run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run, out)
    assert ablate(write(tmp_path), *TINY_ARGS, "--out", str(out), "--epochs", "2") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out}/base/lr0.1/seed0 holds a run of another recipe (epochs 1 -> 2):"
        " pass another --out, or delete the directory to train it again"
    )


def test_a_run_whose_result_was_deleted_is_finished_without_training(tiny_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_run, out)  # 2 variants x 2 lrs x 2 seeds, finished
    victim = out / "all" / "lr0.05" / "seed1"
    first = json.loads((victim / "result.json").read_text())
    (victim / "result.json").unlink()
    others = {p: mtimes(p) for p in out.glob("*/lr*/seed*") if p != victim}
    checkpoint = (victim / "last.pt").stat().st_mtime_ns

    called = counting(monkeypatch)
    capsys.readouterr()
    assert ablate(write(tmp_path), *TINY_ARGS, "--out", str(out)) == 0
    assert "(7 done, 1 to resume, 0 to train)" in capsys.readouterr().err
    assert called == ["all/lr0.05/seed1"]
    assert {p: mtimes(p) for p in others} == others
    assert (victim / "last.pt").stat().st_mtime_ns == checkpoint  # no epoch was trained again
    again = json.loads((victim / "result.json").read_text())
    assert again["test_error"] == first["test_error"] and again["epochs"] == 1
