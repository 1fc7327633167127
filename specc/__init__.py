"""specc — a declarative network-spec compiler.

Describe a CNN once in YAML; specc validates it, infers and checks every shape, rewrites it
(the pool-to-stride transforms of "The All Convolutional Net"), compiles it to PyTorch and
ONNX, trains it and explains it. The core imports neither torch nor onnx.
"""

from __future__ import annotations

from specc.api import CheckResult, check, fmt, load, summary
from specc.errors import Diagnostic, SourcePos, SpecError, UserError
from specc.ir import Graph, Node

__version__ = "0.1.0"

__all__ = [
    "CheckResult",
    "Diagnostic",
    "Graph",
    "Node",
    "SourcePos",
    "SpecError",
    "UserError",
    "check",
    "fmt",
    "load",
    "summary",
    "__version__",
]


def __getattr__(name: str):
    # Heavy entry points live in the backends and are imported on first use only, so that
    # `import specc` and `specc check` never pay for torch or onnx.
    lazy = {
        "build": ("specc_torch", "build"),
        "explain": ("specc_viz", "explain"),
        "transform": ("specc.transforms", "transform"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'specc' has no attribute {name!r}")
