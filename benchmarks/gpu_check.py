"""The GPU proof, driven by benchmarks/gpu_check.sh: the CUDA tests, the training benchmark on
the GPU, onnxruntime's CUDA execution provider against torch on the GPU, and a Fashion-MNIST
run to 90% test accuracy; one table on stdout and one JSON file.

Without CUDA every GPU section is skipped, saying why, so CI runs the script end to end.
GPU_CHECK_QUICK=1: a smoke run for CI (the CUDA test file only; the training benchmark and the
ONNX parity on the CPU at batch 2; no Fashion-MNIST).
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "backends")]

QUICK = os.environ.get("GPU_CHECK_QUICK") == "1"
# The whole script's seconds (GPU_CHECK_BUDGET, default 540): a device call is cut at 600 s, so
# each section's subprocess gets at most what is left, and the JSON is rewritten after each one.
BUDGET = float(os.environ.get("GPU_CHECK_BUDGET", "540"))
STARTED = time.perf_counter()
FMNIST_DIRS = (ROOT / ".data" / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist"))


def wheel_fits(name: str, python: tuple[int, int] = sys.version_info[:2], machine: str = platform.machine()) -> bool:
    """Whether the wheel file `name` installs here: pure-Python wheels everywhere, compiled ones
    only for this CPython version on Linux on this CPU."""
    tags, cpython = name.removesuffix(".whl").split("-")[-3:], f"cp{python[0]}{python[1]}"
    pythons, abi, platforms = tags[0].split("."), tags[1], tags[2].split(".")
    if abi == "none" and platforms == ["any"]:
        return any(p in ("py3", f"py{python[0]}{python[1]}") for p in pythons)
    linux = any(p.startswith(("manylinux", "linux")) and p.endswith(machine) for p in platforms)
    return cpython in pythons and abi == cpython and linux


def unpack_wheels(folder: Path, site: Path) -> None:
    """Every wheel in `folder` that fits this Python, unpacked into `site` (a folder for
    PYTHONPATH): a wheel's files are laid out as they go into site-packages. For a Python
    without pip (a venv made by uv); `folder` holds one version of each package."""
    fitting = sorted(w for w in folder.glob("*.whl") if wheel_fits(w.name))
    for wheel in fitting:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    print(f"gpu_check: unpacked {len(fitting)} wheels into {site}: {' '.join(w.name for w in fitting)}")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run(command: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A section's command, cut at `timeout` or at the end of the budget; its output is echoed
    so the log shows what happened."""
    left = BUDGET - (time.perf_counter() - STARTED)
    if left < 20:
        return subprocess.CompletedProcess(command, 124, "", "out of time (GPU_CHECK_BUDGET): not run")
    timeout = min(timeout, left)
    print("$ " + " ".join(command), flush=True)
    # A session of its own: on a timeout the whole group goes (a test's own subprocesses too,
    # which would otherwise hold the pipes open and hang this script).
    pipe = subprocess.PIPE
    with subprocess.Popen(
        command, cwd=ROOT, stdout=pipe, stderr=pipe, text=True, env=env, start_new_session=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            stderr, code = stderr + f"\ntimed out after {timeout:.0f} s", 124
    print(stdout[-4000:] + stderr[-2000:], flush=True)
    return subprocess.CompletedProcess(command, code, stdout, stderr)


# -- the sections: each returns {"status": ok|fail|skipped, "summary": one line, ...} ----------
def cuda_tests() -> dict:
    # The files that hold `cuda` tests, not the whole suite: collecting every test module would
    # import what a bare GPU machine may lack (hypothesis, jsonschema, captum).
    files = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py") if "mark.cuda" in p.read_text()
    )
    target = ["tests/train/test_cuda.py"] if QUICK else [*files, "-m", "cuda"]
    # No plugins the machine happens to have (installed packages register some): only pytest's own.
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    result = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *target], 480, env)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", result.stdout)}
    ran = counts.get("passed", 0) + counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "deselected") or result.stderr.strip()[-200:]
    if not cuda_available():
        return {"status": "skipped", "summary": f"no CUDA device: {summary}", "counts": counts}
    status = "ok" if result.returncode == 0 and ran else "fail"
    return {"status": status, "summary": summary, "counts": counts}


def train_benchmark() -> dict:
    if not cuda_available() and not QUICK:
        return {"status": "skipped", "summary": "no CUDA device"}
    if cuda_available():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            result = run([sys.executable, "benchmarks/bench_train_gpu.py", "--json", str(out)], 420)
            if result.returncode != 0 or not out.exists():
                return {"status": "fail", "summary": (result.stderr.strip() or "no figures")[-300:]}
            figures = json.loads(out.read_text())
    else:  # quick mode on a CPU: the code path only, in this process (no second torch import)
        import argparse

        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_train_gpu import measure

        smoke = {"device": "cpu", "batch": 2, "rounds": 1, "steps": 1, "warmup": 0, "no_compile": True}
        figures = measure(argparse.Namespace(**smoke))
    ratios = figures["ratios"]
    rates = ", ".join(f"{k} {v:.0f} img/s" for k, v in figures["images_per_s"].items())
    summary = (
        f"{figures['device']}: specc/hand fp32 {ratios['specc-fp32 / hand-fp32']:.3f}, bf16"
        f" {ratios['specc-bf16-cl / hand-bf16-cl']:.3f}; bf16+CL/fp32 eager {ratios['specc-bf16-cl / hand-fp32']:.2f}x"
        f" ({rates})"
    )
    if "specc-bf16-compile / hand-fp32" in ratios:
        summary += f"; bf16+compile/fp32 eager {ratios['specc-bf16-compile / hand-fp32']:.2f}x"
    elif figures.get("compile_error"):
        summary += f"; --compile failed: {figures['compile_error'][:120]}"
    if not cuda_available():
        return {"status": "skipped", "summary": f"no CUDA device; CPU smoke run only: {summary}", "figures": figures}
    return {"status": "ok" if all(figures["targets"].values()) else "fail", "summary": summary, "figures": figures}


def onnxruntime_cuda() -> dict:
    """specc's ONNX of ALL-CNN-C on onnxruntime's CUDA provider vs the same weights in torch on
    the GPU: largest difference of the logits, and images/s (interleaved rounds)."""
    import onnxruntime as ort
    import torch

    providers = ort.get_available_providers()
    on_gpu = cuda_available() and "CUDAExecutionProvider" in providers
    if not on_gpu and not QUICK:
        why = "no CUDA device" if not cuda_available() else "onnxruntime-gpu absent"
        return {"status": "skipped", "summary": f"{why} (onnxruntime providers: {', '.join(providers)})"}
    import specc

    device = torch.device("cuda" if on_gpu else "cpu")
    batch, rounds, repeats = (256, 5, 10) if on_gpu else (2, 1, 1)
    model = specc.build(str(ROOT / "specs" / "allcnn_c.yaml"), seed=0, output="logits").eval().to(device)
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = specc.compile(str(ROOT / "specs" / "allcnn_c.yaml"), "onnx", tmp, weights=weights, force=True)["onnx"]
        provider = ["CUDAExecutionProvider", "CPUExecutionProvider"] if on_gpu else ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(path), providers=provider)
    used = session.get_providers()[0]
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    name = session.get_inputs()[0].name
    torch.backends.cuda.matmul.allow_tf32 = False  # parity in plain fp32
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        expected = model(x.to(device)).cpu().numpy()
    got = session.run(None, {name: x.numpy()})[0]
    diff = float(abs(got - expected).max())
    rates: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    x_device, x_host = x.to(device), x.numpy()
    session.run(None, {name: x_host})  # warm-up: both pick their kernels first
    with torch.no_grad():
        model(x_device).cpu()
    for _ in range(rounds):
        for which in rates:
            started = time.perf_counter()
            for _ in range(repeats):
                if which == "torch":
                    with torch.no_grad():
                        model(x_device).cpu()  # the logits on the host, as onnxruntime returns them
                else:
                    session.run(None, {name: x_host})
            rates[which].append(batch * repeats / (time.perf_counter() - started))
    median = {k: statistics.median(v) for k, v in rates.items()}
    summary = (
        f"{used}: max |logit diff| {diff:.2e}; onnxruntime {median['onnxruntime']:.0f} img/s,"
        f" torch {median['torch']:.0f} img/s ({median['onnxruntime'] / median['torch']:.2f}x), batch {batch}"
    )
    figures = {"provider": used, "max_abs_diff": diff, "images_per_s": median, "batch": batch}
    if not on_gpu:
        why = "no CUDA device" if not cuda_available() else "onnxruntime-gpu absent"
        return {"status": "skipped", "summary": f"{why}; CPU smoke run only: {summary}", "figures": figures}
    return {"status": "ok" if diff < 1e-3 else "fail", "summary": summary, "figures": figures}


def fashion_mnist() -> dict:
    """specs/allcnn_c_fmnist.yaml on the GPU: the time to the first epoch at >= 90% test accuracy."""
    if not cuda_available() or QUICK:
        return {"status": "skipped", "summary": "quick mode" if QUICK else "no CUDA device"}
    data = next((d for d in FMNIST_DIRS if (d / "t10k-labels-idx1-ubyte.gz").exists() or d.is_dir()), None)
    if data is None:
        return {"status": "skipped", "summary": f"no Fashion-MNIST files in {' or '.join(map(str, FMNIST_DIRS))}"}
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "specc", "train", "specs/allcnn_c_fmnist.yaml", "--device", "cuda"]
        command += ["--data-dir", str(data), "--out", f"{tmp}/run", "--no-progress"]
        started = time.perf_counter()
        result = run(command, 480)
        wall = time.perf_counter() - started
        metrics = Path(tmp) / "run" / "metrics.jsonl"
        rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    if result.returncode != 0 or not rows:
        return {"status": "fail", "summary": (result.stderr.strip() or "no metrics")[-300:]}
    reached = next((row for row in rows if row["test_acc"] >= 0.90), None)
    accuracies = [round(100 * row["test_acc"], 2) for row in rows]
    if reached is None:
        return {"status": "fail", "summary": f"never reached 90% (test accuracy per epoch {accuracies})"}
    summary = (
        f"90% test accuracy at epoch {reached['epoch']} after {reached['elapsed']:.1f} s of training;"
        f" {len(rows)} epochs {100 * rows[-1]['test_acc']:.2f}% in {wall:.0f} s wall (seed 0)"
    )
    return {"status": "ok", "summary": summary, "accuracy_per_epoch": accuracies, "wall_seconds": wall}


SECTIONS = {
    "CUDA tests": cuda_tests,
    "training benchmark": train_benchmark,
    "onnxruntime CUDA EP": onnxruntime_cuda,
    "Fashion-MNIST to 90%": fashion_mnist,
}


def main() -> int:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    results: dict[str, dict] = {}
    report = {"gpu": gpu, "torch": str(torch.__version__), "quick": QUICK, "sections": results}
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    for name, section in SECTIONS.items():
        began = time.perf_counter()
        try:
            results[name] = section()
        except Exception as exc:  # noqa: BLE001 - one section's failure must not hide the others
            results[name] = {"status": "fail", "summary": f"{type(exc).__name__}: {exc}"[:300]}
        results[name]["seconds"] = round(time.perf_counter() - began, 1)
        report["seconds"] = round(time.perf_counter() - STARTED, 1)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2))  # what is done, if the call is cut
    where = gpu or "no CUDA device: every GPU section skipped"
    print(f"\nGPU check — {where}; torch {torch.__version__}{' (quick mode)' if QUICK else ''}")
    print(f"{'section':22} {'status':8} {'s':>6}  result")
    for name, result in results.items():
        print(f"{name:22} {result['status']:8} {result['seconds']:6.1f}  {result['summary']}")
    print(f"written: {out / 'gpu_check.json'}")
    return 1 if any(r["status"] == "fail" for r in results.values()) else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--unpack-wheels"]:  # gpu_check.sh where there is no pip: FOLDER SITE
        unpack_wheels(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
