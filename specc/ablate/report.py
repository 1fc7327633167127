"""The Table 3-style report: OUT/report.json, OUT/report.md and OUT/error_vs_params.png.

Every number of the summary table is rounded once, here, to what the markdown shows, and
both files are written from the same rounded values — so the table and the JSON agree
exactly (a test parses one and compares it with the other). The raw per-run numbers are in
the JSON's `runs`.

Learning-rate choice: for each variant, the rate whose runs have the lowest mean error on
the selection split (`val`, held out of the training set, or `test`, the paper's practice)
at the end of training; a rate with a diverged seed is not eligible. The test error reported
is that rate's, mean ± sample standard deviation over seeds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from specc.ablate.plan import Task
from specc.ablate.stats import compare, failed_to_train
from specc.ablate.variants import Skipped, Variant, paper_model
from specc.fileio import atomic_write, write_text

# Table 3 of the paper: CIFAR-10 test error (%) without augmentation, and exact parameters.
PAPER_CIFAR10 = {
    "A": {
        "base": (12.47, 839_242),
        "strided": (13.46, 839_242),
        "convpool": (10.21, 1_254_250),
        "all": (10.30, 1_254_250),
    },
    "B": {
        "base": (10.20, 885_610),
        "strided": (10.98, 885_610),
        "convpool": (9.33, 1_300_618),
        "all": (9.10, 1_300_618),
    },
    "C": {
        "base": (9.74, 954_730),
        "strided": (10.19, 954_730),
        "convpool": (9.31, 1_369_738),
        "all": (9.08, 1_369_738),
    },
}
REPORT_JSON, REPORT_MD, PLOT = "report.json", "report.md", "error_vs_params.png"


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def lr_search(variant: str, tasks: list[Task], results: dict[str, dict], select: str) -> list[dict]:
    """One entry per learning rate of a variant: its runs' mean errors, or why it has none."""
    out = []
    for lr in dict.fromkeys(t.lr for t in tasks if t.variant == variant):
        runs = [results.get(t.name) for t in tasks if t.variant == variant and t.lr == lr]
        done = [r for r in runs if r is not None]
        entry = {"variant": variant, "lr": lr, "runs": len(runs), "finished": len(done)}
        if any(r["status"] == "diverged" for r in done):
            entry["status"] = "diverged"
        elif len(done) < len(runs):
            entry["status"] = "pending"
        else:
            entry["status"] = "done"
            # Runs that failed to train are listed, not averaged in (see specc.ablate.stats).
            flags = failed_to_train([r["test_error"] for r in done])
            entry["failed"] = [r["seed"] for r, bad in zip(done, flags) if bad]
            kept = [r for r, bad in zip(done, flags) if not bad]
            entry["select_error"] = statistics.fmean(r[f"{select}_error"] for r in kept)
            entry["test_errors"] = [r["test_error"] for r in kept]
            entry["test_error"], entry["test_std"] = _mean_std(entry["test_errors"])
            if all("val_error" in r for r in kept):
                entry["val_error"] = statistics.fmean(r["val_error"] for r in kept)
            entry["seconds"] = statistics.fmean(r["seconds"] for r in kept)
        out.append(entry)
    return out


def build(
    spec_name: str,
    variants: list[Variant | Skipped],
    tasks: list[Task],
    results: dict[str, dict],
    settings: dict,
) -> dict:
    """The report as plain data (what report.json holds)."""
    select, dataset = settings["select"], settings["dataset"]
    paper = PAPER_CIFAR10.get(paper_model(spec_name) or "") if dataset == "cifar10" else None
    rows, skipped, searches = [], [], []
    chosen: dict[str, list[float]] = {}  # variant -> its chosen rate's test errors, one per kept seed
    for variant in variants:
        if isinstance(variant, Skipped):
            skipped.append({"variant": variant.name, "model": variant.label, "reason": variant.reason})
            continue
        search = lr_search(variant.name, tasks, results, select)
        searches += search
        row = {"variant": variant.name, "model": variant.label, "params": variant.params, "macs": variant.macs}
        eligible = [e for e in search if e["status"] == "done"]
        if len(eligible) < len(search) and any(e["status"] == "pending" for e in search):
            row["status"] = "pending"
        elif not eligible:
            row["status"] = "diverged"
        else:
            best = min(eligible, key=lambda e: e["select_error"])
            std = best["test_std"]
            row |= {
                "status": "done",
                "test_error_pct": _pct(best["test_error"]),
                "test_error_std_pct": _pct(std),
                "val_error_pct": _pct(best.get("val_error")),
                "train_seconds": round(best["seconds"], 1),
                "best_lr": best["lr"],
                "failed_seeds": best["failed"],
            }
            chosen[variant.name] = best["test_errors"]
        row["seeds"] = settings["seeds"]
        if paper:
            row["paper_error_pct"], row["paper_params"] = paper[variant.name]
        rows.append(row)
    failed = {(e["variant"], e["lr"], seed) for e in searches for seed in e.get("failed", [])}
    runs = [
        results[t.name] | {"run_dir": str(t.run_dir), "failed_to_train": (t.variant, t.lr, t.seed) in failed}
        for t in tasks
        if t.name in results
    ]
    search = [_public(e) for e in searches]
    pairs = _comparisons(rows, chosen)
    return {
        "spec": spec_name,
        **settings,
        "rows": rows,
        "skipped": skipped,
        "comparisons": pairs,
        "lr_search": search,
        "runs": runs,
    }


def _comparisons(rows: list[dict], chosen: dict[str, list[float]]) -> list[dict]:
    """Every pair of finished variants at their chosen rates: the difference of mean test
    errors (first minus second, in points) and whether it exceeds the seed-to-seed spread."""
    done = [r for r in rows if r["status"] == "done"]
    out = []
    for i, first in enumerate(done):
        for second in done[i + 1 :]:
            result = compare(chosen[first["variant"]], chosen[second["variant"]])
            out.append(
                {
                    "first": first["variant"],
                    "second": second["variant"],
                    "difference_pct": _pct(result["difference"]),
                    "threshold_pct": _pct(result["threshold"]),
                    "verdict": result["verdict"],
                }
            )
    return out


def _public(entry: dict) -> dict:
    """An lr-search entry as the report shows it: errors in percent, rounded."""
    hidden = ("select_error", "test_error", "test_std", "val_error", "test_errors")
    out = {k: v for k, v in entry.items() if k not in hidden}
    for key in ("select_error", "test_error", "test_std", "val_error"):
        if key in entry:
            out[f"{key}_pct"] = _pct(entry[key])
    if "seconds" in out:
        out["seconds"] = round(out["seconds"], 1)
    return out


# -- markdown ----------------------------------------------------------------------------
def _num(value, fmt: str = "{:.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def _error_cell(row: dict) -> str:
    if row["status"] != "done":
        return row["status"]
    std = row["test_error_std_pct"]
    text = _num(row["test_error_pct"]) + ("" if std is None else f" ± {std:.2f}")
    failed = row.get("failed_seeds") or []
    if failed:
        text += f" (without seed {', '.join(map(str, failed))}: failed to train)"
    return text


def table(report: dict) -> str:
    """The summary table (one row per variant) as markdown."""
    paper = any("paper_error_pct" in r for r in report["rows"])
    select = report["select"]
    head = ["model", "test error %", f"{'val' if select == 'val' else 'test'}-chosen lr"]
    if select == "val":
        head.insert(2, "val error %")
    head += ["params", "MACs", "train time / run (s)"]
    if paper:
        head += ["paper error % (CIFAR-10)", "paper params"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        done = row["status"] == "done"
        cells = [row["model"], _error_cell(row), _num(row.get("best_lr"), "{:g}")]
        if select == "val":
            cells.insert(2, _num(row.get("val_error_pct")))
        cells += [f"{row['params']:,}", f"{row['macs']:,}", _num(row.get("train_seconds") if done else None, "{:.1f}")]
        if paper:
            cells += [_num(row["paper_error_pct"]), f"{row['paper_params']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    for skip in report["skipped"]:
        lines.append(f"| {skip['model']} | not derived | " + " | ".join(["—"] * (len(head) - 2)) + " |")
    return "\n".join(lines)


def search_table(report: dict) -> str:
    """Every learning rate of every variant: the search behind the summary's choice."""
    lines = ["| model | lr | val error % | test error % | status |", "|---|---|---|---|---|"]
    models = {r["variant"]: r["model"] for r in report["rows"]}
    for e in report["lr_search"]:
        test = _num(e.get("test_error_pct"))
        if e.get("test_std_pct") is not None:
            test += f" ± {e['test_std_pct']:.2f}"
        lines.append(
            f"| {models[e['variant']]} | {e['lr']:g} | {_num(e.get('val_error_pct'))} | {test} | {e['status']} |"
        )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    seeds = report["seeds"]
    chosen = (
        f"chosen on a validation split ({report['val_split']:g} of the training set, held out)"
        if report["select"] == "val"
        else "chosen on the test set (the paper's practice; the test error is then optimistic)"
    )
    spread = f"mean ± standard deviation over {seeds} seeds" if seeds > 1 else "one seed (no spread measured)"
    parts = [
        f"# Pooling ablation of {report['spec']} on {report['dataset']}",
        "",
        f"Test error at the end of training, {spread}; learning rate per model out of"
        f" {', '.join(f'{lr:g}' for lr in report['lrs'])}, {chosen}.",
        f"Recipe: {report['recipe_text']}.",
    ]
    if report.get("preset"):
        parts.append(f"Preset {report['preset']}: {report['preset_note']}.")
    if report.get("transforms"):
        parts.append(f"Spec prepared with: {', '.join(report['transforms'])}; variants derived from it.")
    parts += ["", table(report), ""]
    for skip in report["skipped"]:
        parts.append(f"- {skip['model']} cannot be derived: {skip['reason']}")
    if report["skipped"]:
        parts.append("")
    parts += _differences(report)
    parts += ["## Learning-rate search", "", search_table(report), ""]
    if report.get("wall_seconds") is not None:
        parts.append(
            f"{len(report['runs'])} runs, {report['compute_seconds']:.0f} s of training summed over runs;"
            f" {report['jobs']} job(s) x {report['threads_per_job']} thread(s); wall time of the last"
            f" invocation {report['wall_seconds']:.0f} s."
        )
    return "\n".join(parts) + "\n"


def _differences(report: dict) -> list[str]:
    """The pairwise verdicts and the runs left out, as markdown lines."""
    models = {r["variant"]: r["model"] for r in report["rows"]}
    lines = []
    if report.get("comparisons"):
        lines += [
            "## Differences between models",
            "",
            "Difference of mean test error (first − second, points) at each model's chosen rate, and"
            " whether it exceeds the seed-to-seed spread (Welch's t-test, 5%, two-sided: the"
            " threshold is t·SE).",
            "",
            "| first | second | difference | threshold | verdict |",
            "|---|---|---|---|---|",
        ]
        for pair in report["comparisons"]:
            lines.append(
                f"| {models[pair['first']]} | {models[pair['second']]} | {pair['difference_pct']:+.2f}"
                f" | {_num(pair['threshold_pct'])} | {pair['verdict']} |"
            )
        lines.append("")
    failed = [r for r in report["runs"] if r.get("failed_to_train")]
    if failed:
        lines += ["Runs that failed to train (far above their seeds' median; listed, not averaged in):", ""]
        for run in failed:
            lines.append(
                f"- {models.get(run['variant'], run['variant'])} lr {run['lr']:g} seed {run['seed']}:"
                f" test error {100 * run['test_error']:.2f}%"
            )
        lines.append("")
    return lines


# -- plot --------------------------------------------------------------------------------
def plot(report: dict, path: Path) -> None:
    """Test error against parameters, one point per variant (the paper's as hollow marks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    figure = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    markers = "osDv^<>p"
    done = [r for r in report["rows"] if r["status"] == "done"]
    for i, row in enumerate(done):
        # A legend, not labels at the points: variants with equal parameters sit on top
        # of each other (Strided has the base model's count).
        std = row["test_error_std_pct"]
        axes.errorbar(
            row["params"],
            row["test_error_pct"],
            yerr=std,
            fmt=markers[i % len(markers)],
            markersize=8,
            capsize=4,
            label=f"{row['model']}: {_error_cell(row)}% (lr {row['best_lr']:g})",
        )
    paper = [r for r in report["rows"] if "paper_error_pct" in r]
    if paper:
        axes.scatter(
            [r["paper_params"] for r in paper],
            [r["paper_error_pct"] for r in paper],
            facecolors="none",
            edgecolors="grey",
            s=60,
            label="paper, CIFAR-10 (Table 3)",
        )
    seeds = report["seeds"]
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed, no error bars"
    axes.set_xlabel("parameters")
    axes.set_ylabel("test error %")
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.set_title(f"{report['spec']} variants on {report['dataset']} ({spread})", fontsize="medium")
    axes.grid(alpha=0.3)
    if done or paper:
        axes.legend(fontsize="small")
    figure.tight_layout()
    atomic_write(path, lambda f: figure.savefig(f, format="png"))


def write(report: dict, out: Path, with_plot: bool = True) -> None:
    """report.json, report.md and (`with_plot`) the plot into `out`, each replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        (REPORT_JSON, json.dumps(report, indent=2, allow_nan=False) + "\n"),
        (REPORT_MD, markdown(report)),
    ):
        write_text(out / name, text)
    if with_plot:
        plot(report, out / PLOT)
