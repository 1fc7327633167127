"""`specc ablate`: the paper's pooling ablation (Table 3) for any spec and dataset.

| module | what it holds |
|---|---|
| `variants.py` | the variants (base, strided, convpool, all), derived with the transform table |
| `presets.py` | `paper` (CIFAR-10, the paper's schedule) and `cpu` (Fashion-MNIST, ~30 min) |
| `plan.py` | one run per (variant, lr, seed), its directory, and whether it is done |
| `runner.py` | training the runs, in this process or `--jobs` spawned ones |
| `report.py` | the lr choice, report.md / report.json (same numbers) and the plot |
| `ablation.py` | `prepare` (no torch) and `execute_ablation`: the whole thing |

    from specc.ablate.ablation import Settings, execute_ablation, prepare
    report = execute_ablation(prepare("specs/model_c.yaml", Settings(preset="cpu")))

Nothing here imports torch at module level; the training runs import it when they start.
"""
