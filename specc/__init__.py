"""specc — a declarative network-spec compiler.

Describe a CNN once in YAML; specc validates it, infers and checks every shape, rewrites it
(the pool-to-stride transforms of "The All Convolutional Net"), compiles it to PyTorch and
ONNX, trains it and explains it. The core imports neither torch nor onnx.
"""

from __future__ import annotations

from specc.api import CheckResult, build, check, fmt, from_onnx, from_torch, load, summary
from specc.errors import Diagnostic, SourcePos, SpecError, UserError
from specc.ir import Graph, Node
from specc.version import __version__

__all__ = [
    "CheckResult",
    "Diagnostic",
    "Graph",
    "Node",
    "SourcePos",
    "SpecError",
    "UserError",
    "build",
    "check",
    "fmt",
    "from_onnx",
    "from_torch",
    "load",
    "summary",
    "__version__",
]


def __getattr__(name: str):
    # Heavy entry points live above the core and are imported on first use only, so that
    # `import specc` and `specc check` never pay for torch or onnx. (`build` imports torch
    # when called.)
    lazy = {
        "explain": ("specc_viz", "explain"),
        "transform": ("specc.transforms", "transform"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'specc' has no attribute {name!r}")
