"""Dependencies point one way: commands → train/ablate/viz → backends → core.

Every `import` statement under specc/ and backends/ is read with `ast` (nothing is
imported) and checked against these rules:

- Layers, from the top:
    4 commands   specc/commands, specc/cli.py, specc/api.py, specc/__init__.py, specc/__main__.py
    3 upper      specc/training, specc/ablate, backends/specc_viz, backends/specc_explain_onnx
    2 backends   backends/specc_torch, backends/specc_onnx
    1 core       everything else under specc/
  A module may import its own layer and the layers below it, never one above. This holds
  for imports anywhere in a file — at module level, inside a function, under
  `if TYPE_CHECKING:` — because a lazy import is still a dependency: the core must never
  reach into training or a backend, and a backend never into the API, even on first use.
  (So backends never import `specc.api`, `specc.commands`, `specc.training`, nor the package
  `specc` itself: `import specc` / `from specc import load` mean specc/__init__, the API
  layer. `from specc import errors` names a core submodule and is fine.)
- The ONNX emitters (`specc_onnx`, `specc_explain_onnx`) read the IR and numpy weights, never
  a torch module: they import neither torch nor the PyTorch backend, anywhere.
- `specc predict` runs a compiled model with onnxruntime alone: it imports no training code
  (the preprocessing formula it applies is the core's, `specc.preprocessing`).
- The core imports no heavy library (torch, onnx, onnxruntime, numpy, PIL, matplotlib) at
  module level, so that `import specc` and `specc check` stay instant. Inside a function
  it may (the checkpoint reader imports torch when it reads a file); under
  `if TYPE_CHECKING:` it may too, as that never runs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "numpy", "PIL", "matplotlib")
LAYER_NAMES = {1: "core", 2: "backends", 3: "train/ablate/viz", 4: "commands"}
COMMANDS = ("specc", "specc.__main__", "specc.api", "specc.cli", "specc.commands")
UPPER = ("specc.training", "specc.ablate", "specc_viz", "specc_explain_onnx")
BACKENDS = ("specc_torch", "specc_onnx")


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def layer_of(module: str) -> int | None:
    """The layer of a first-party module, None for anything else (stdlib, third party)."""
    if module == "specc" or _within(module, COMMANDS[1:]):
        return 4
    if _within(module, UPPER):
        return 3
    if _within(module, BACKENDS):
        return 2
    if _within(module, ("specc",)):
        return 1
    return None


def source_files() -> dict[str, Path]:
    """Module name -> file, for every module of specc/ and backends/."""
    out = {}
    for base in (ROOT, ROOT / "backends"):
        top = ("specc",) if base == ROOT else ("specc_torch", "specc_onnx", "specc_viz", "specc_explain_onnx")
        for package in top:
            for path in sorted((base / package).rglob("*.py")):
                parts = path.relative_to(base).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = path
    return out


MODULES = source_files()


@dataclass(frozen=True)
class Import:
    target: str  # the module imported
    line: int
    top_level: bool  # runs when the importing module is imported
    type_only: bool  # under `if TYPE_CHECKING:`


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path) -> list[Import]:
    """Every import in a file, with relative imports resolved and `from pkg import submodule`
    counted as an import of the submodule."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, top_level: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, top_level, type_only) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in MODULES else base
                    found.append(Import(target, child.lineno, top_level, type_only))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False, type_only)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), top_level, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), top_level, type_only)
            else:
                visit(child, top_level, type_only)  # class bodies, try/with/if blocks run at import

    visit(ast.parse(path.read_text(), str(path)), True, False)
    return found


def test_the_layers_cover_every_module():
    assert len(MODULES) > 50
    unknown = [m for m in MODULES if layer_of(m) is None]
    assert not unknown
    assert layer_of("specc.api") == 4 and layer_of("specc.training.config") == 3
    assert layer_of("specc_onnx.emit") == 2 and layer_of("specc.transforms.weights") == 1


def upward_imports(module: str, path: Path) -> list[str]:
    """`file:line: layer imports target (layer)` for every import of a higher layer."""
    own = layer_of(module)
    assert own is not None
    upward = []
    for imp in imports_of(module, path):
        target = layer_of(imp.target)
        if target is not None and target > own:
            upward.append(f"{path.name}:{imp.line}: {LAYER_NAMES[own]} imports {imp.target} ({LAYER_NAMES[target]})")
    return upward


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    upward = upward_imports(module, MODULES[module])
    assert not upward, f"{MODULES[module].relative_to(ROOT)}:\n" + "\n".join(upward)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) == 1))
def test_core_imports_no_heavy_library_at_import_time(module):
    path = MODULES[module]
    heavy = [
        f"{path.relative_to(ROOT)}:{imp.line}: import {imp.target}"
        for imp in imports_of(module, path)
        if imp.top_level and not imp.type_only and imp.target.split(".")[0] in HEAVY
    ]
    assert not heavy, "\n".join(heavy)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, ("specc_onnx", "specc_explain_onnx"))))
def test_the_onnx_emitters_never_import_torch(module):
    path = MODULES[module]
    found = [
        f"line {i.line}: {i.target}"
        for i in imports_of(module, path)
        if i.target.split(".")[0] in ("torch", "torchvision", "specc_torch")
    ]
    assert not found


def test_predict_needs_no_training_code():
    path = MODULES["specc.commands.predict"]
    training = [
        f"line {i.line}: {i.target}" for i in imports_of("specc.commands.predict", path) if layer_of(i.target) == 3
    ]
    assert not training


def test_the_rules_catch_violations(tmp_path):
    """The checker itself: a lazy upward import counts, TYPE_CHECKING only exempts heavy imports."""
    path = tmp_path / "probe.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "if TYPE_CHECKING:\n"
        "    import torch\n"
        "    from specc.api import load\n"
        "def f():\n"
        "    from specc.training import loop\n"
        "    from specc import errors\n"
        "from specc import load\n"
    )
    found = {(i.target, i.top_level, i.type_only) for i in imports_of("specc.probe", path)}
    assert found == {
        ("typing", True, False),
        ("numpy", True, False),
        ("torch", True, True),
        ("specc.api", True, True),
        ("specc.training.loop", False, False),
        ("specc.errors", False, False),
        ("specc", True, False),
    }
    assert [line.split(": ", 1)[1] for line in upward_imports("specc.probe", path)] == [
        "core imports specc.api (commands)",
        "core imports specc.training.loop (train/ablate/viz)",
        "core imports specc (commands)",
    ]
