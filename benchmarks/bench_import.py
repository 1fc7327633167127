"""`specc import` of ResNet-50's ONNX (about 100 MB of weights): wall time and peak memory.

    python benchmarks/bench_import.py                 # 3 interleaved rounds
    python benchmarks/bench_import.py --rounds 5 --json

Setup: specs/zoo/resnet50.yaml compiled with random weights (`--no-fold`, batch_norm kept),
its specc metadata removed (as a foreign model comes), written once under /tmp.

Each measurement runs in a fresh process, so that its peak RSS is its own:
  load      `onnx.load` of the file alone: the least any importer of it must do (baseline)
  import    `specc_onnx.importer.import_model` of the file: checks, strict shape inference on
            a weight-free copy, the patterns, the spec loaded back and compared, the weights
            as float32 arrays
Rounds alternate load and import (a change of load on a shared machine hits both alike).
Reported: median seconds of each, import/load, and the peak RSS each process added after its
imports (VmHWM reset through /proc/self/clear_refs, Linux), in copies of the weights. The
target is two: the parsed model and the imported arrays (onnx.load alone peaks at two: the
file's bytes and the parsed model); what import adds beyond them is printed in MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "backends")]

MODEL = Path("/tmp/specc-bench-import/resnet50.onnx")

CHILD = r"""
import json, sys, time
sys.path[:0] = [{root!r}, {backends!r}]
import onnx
from specc_onnx.importer import import_model
import specc_onnx.importer.build, specc.spec, specc.shapes  # every import done before the baseline

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS: the imports' own peak is not counted
before = status("VmRSS")
start = time.perf_counter()
if {what!r} == "load":
    model = onnx.load({path!r})
    count = len(model.graph.initializer)
else:
    result = import_model({path!r})
    count = len(result.graph.nodes)
seconds = time.perf_counter() - start
peak = status("VmHWM")
print(json.dumps({{"seconds": seconds, "added_kib": peak - before, "count": count}}))
"""


def make_model() -> tuple[Path, int]:
    """ResNet-50's ONNX without specc metadata (made once); (path, bytes of float weights)."""
    import onnx

    import specc
    from specc_onnx import emit, random_weights

    graph = specc.load(str(ROOT / "specs" / "zoo" / "resnet50.yaml"))
    weights = random_weights(graph)
    size = sum(int(a.size) * 4 for a in weights.values())
    if not MODEL.exists():
        MODEL.parent.mkdir(parents=True, exist_ok=True)
        model = emit(graph, weights, fold_bn=False)
        del model.metadata_props[:]
        onnx.save(model, str(MODEL))
    return MODEL, size


def measure(what: str, path: Path) -> dict:
    code = CHILD.format(root=str(ROOT), backends=str(ROOT / "backends"), what=what, path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    path, weight_bytes = make_model()
    runs: dict[str, list[dict]] = {"load": [], "import": []}
    for _ in range(args.rounds):
        for what in runs:  # interleaved
            runs[what].append(measure(what, path))
    med = {what: statistics.median(r["seconds"] for r in rs) for what, rs in runs.items()}
    added = {what: max(r["added_kib"] for r in rs) * 1024 for what, rs in runs.items()}
    copies = {what: value / weight_bytes for what, value in added.items()}
    report = {
        "model": str(path),
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "weights_mb": round(weight_bytes / 1e6, 1),
        "layers": runs["import"][0]["count"],
        "load_s": round(med["load"], 2),
        "import_s": round(med["import"], 2),
        "import_over_load": round(med["import"] / med["load"], 2),
        "load_peak_copies": round(copies["load"], 2),
        "import_peak_copies": round(copies["import"], 2),
        "import_peak_beyond_two_copies_mb": round((added["import"] - 2 * weight_bytes) / 1e6, 1),
        "rounds": args.rounds,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"ResNet-50 ONNX: {report['file_mb']} MB file, {report['weights_mb']} MB of weights, {report['layers']} layers"
    )
    print(f"  onnx.load       {report['load_s']:6.2f} s   peak +{report['load_peak_copies']:.2f} copies of the weights")
    print(
        f"  specc import    {report['import_s']:6.2f} s   peak +{report['import_peak_copies']:.2f} copies of the weights"
    )
    print(f"  import / load   {report['import_over_load']:.2f}x   (median of {args.rounds} interleaved rounds)")
    beyond = report["import_peak_beyond_two_copies_mb"]
    print(f"  import's peak beyond two copies of the weights: {beyond:+.1f} MB (graph structures, shape inference)")
    print(f"  target < 10 s: {'met' if report['import_s'] < 10 else 'missed'}")


if __name__ == "__main__":
    main()
