"""specc — a declarative network-spec compiler.

Describe a CNN once in YAML; specc validates it, infers and checks every shape, rewrites it
(the pool-to-stride transforms of "The All Convolutional Net"), compiles it to PyTorch and
ONNX, trains it and explains it. The Python API mirrors the CLI (examples: docs/api.md):

    load(spec)                    a spec (path, YAML text or Graph) -> Graph
    check(spec)                   -> CheckResult: graph, shapes, lint warnings
    summary(spec)                 the per-layer table as text
    fmt(spec)                     canonical YAML
    transform(spec, **passes)     rewrite with the transform table -> TransformResult
    build(spec)                   -> a torch.nn.Module (SpeccModule)
    compile(spec, target, out)    write ONNX and/or PyTorch source -> {target: path}
    train(spec, **recipe)         train in this process -> TrainResult (metrics, checkpoint)
    predict(model, images)        classify with an ONNX file or a built module -> Predictions
    explain(model, inputs, ...)   guided backprop / deconvnet / saliency maps
    from_onnx(path), from_torch(module, x)   import a model -> (Graph, weights)

Errors a user can cause raise `SpecError` (located diagnostics) or `UserError` (one line).
`import specc` imports neither torch nor onnx: each function imports what it needs on call.
"""

from __future__ import annotations

from specc.api import (
    CheckResult,
    Predictions,
    TrainResult,
    build,
    check,
    compile,
    explain,
    fmt,
    from_onnx,
    from_torch,
    load,
    predict,
    summary,
    train,
    transform,
)
from specc.errors import Diagnostic, SourcePos, SpecError, UserError
from specc.ir import Graph, Node
from specc.version import __version__

__all__ = [
    "CheckResult",
    "Diagnostic",
    "Graph",
    "Node",
    "Predictions",
    "SourcePos",
    "SpecError",
    "TrainResult",
    "UserError",
    "__version__",
    "build",
    "check",
    "compile",
    "explain",
    "fmt",
    "from_onnx",
    "from_torch",
    "load",
    "predict",
    "summary",
    "train",
    "transform",
]


def __dir__() -> list[str]:
    # The public API first-class in dir(specc), beside the submodules already imported.
    return sorted(set(__all__) | set(globals()))
