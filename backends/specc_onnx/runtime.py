"""Running specc ONNX models in onnxruntime: a tuned session and the model's metadata.

onnxruntime is imported on first use, so emitting a model needs only the onnx package.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from specc.errors import UserError
from specc_onnx.metadata import SpeccMetadata, parse_metadata

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def default_providers() -> list[str]:
    """CUDA first when onnxruntime-gpu is installed (`pip install 'specc[gpu]'`), else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [CUDA, CPU] if CUDA in available else [CPU]


def cpu_count() -> int:
    """Cores this process may run on (a container's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def session_options(threads: int | None = None):
    """Options that make a small CNN fast on CPU: every graph optimisation (conv+activation
    fusion, NCHWc layouts), one intra-op thread per core, nodes run in order, and no
    inter-op pool (a chain of convs has no parallel branches worth a second pool)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no warnings about unused initializers
    return options


def make_session(model: str | Path | bytes | onnx.ModelProto, providers: list[str] | None = None, threads=None):
    """An onnxruntime InferenceSession of a model file, its bytes or a ModelProto;
    a one-line UserError when the file is missing or not a model."""
    import onnxruntime as ort

    source = str(model) if isinstance(model, (str, Path)) else "<model>"
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, (str, Path)):
        _check_file(Path(model))
        model = str(model)
    try:
        return ort.InferenceSession(
            model, sess_options=session_options(threads), providers=providers or default_providers()
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unexported classes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{source}: onnxruntime cannot load this model ({first})") from None


def read_metadata(model: str | Path | bytes | onnx.ModelProto, source: str | None = None) -> SpeccMetadata:
    """The specc metadata of a model file, its bytes or a ModelProto; a one-line UserError
    for a file that is missing, not ONNX, or an ONNX model specc did not compile. `source`
    names the model in messages (default: its path)."""
    source = source or (str(model) if isinstance(model, (str, Path)) else "<model>")
    if not isinstance(model, onnx.ModelProto):
        model = load_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    return parse_metadata(props, source)


def load_model(model: str | Path | bytes) -> onnx.ModelProto:
    """onnx.load with one-line errors."""
    source = str(model) if isinstance(model, (str, Path)) else "<model>"
    if isinstance(model, (str, Path)):
        _check_file(Path(model))
        model = Path(model).read_bytes()
    try:
        proto = onnx.load_model_from_string(model)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{source}: not an ONNX model (cannot decode it: {exc})") from None
    if not proto.graph.node and not proto.graph.input:
        # protobuf decodes many non-ONNX byte strings into an empty message without complaint
        raise UserError(f"{source}: not an ONNX model (no graph in it)")
    return proto


def session_metadata(session, source: str = "<session>") -> SpeccMetadata:
    """The specc metadata of a loaded session (no second read of the file)."""
    return parse_metadata(dict(session.get_modelmeta().custom_metadata_map), source)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected an .onnx file")
    if not path.is_file():  # reading a FIFO blocks, /dev/zero never ends
        raise UserError(f"{path}: is a special file (device, FIFO or socket), expected an .onnx file")
