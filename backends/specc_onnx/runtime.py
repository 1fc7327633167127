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
TENSORRT = "TensorrtExecutionProvider"
# --provider NAME -> the execution providers to ask for, in onnxruntime's order of preference
# (TensorRT hands what it cannot run to CUDA, CUDA to the CPU).
PROVIDERS = {"cpu": [CPU], "cuda": [CUDA, CPU], "tensorrt": [TENSORRT, CUDA, CPU]}
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")


def default_providers() -> list[str]:
    """CUDA first when onnxruntime-gpu is installed (`pip install 'specc[gpu]'`), else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [CUDA, CPU] if CUDA in available else [CPU]


def installed_distributions() -> dict[str, str]:
    """The onnxruntime distributions pip installed here, with their versions."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def distribution_conflict(found: dict[str, str] | None = None) -> str | None:
    """Why an installation with both onnxruntime and onnxruntime-gpu is broken, or None."""
    found = installed_distributions() if found is None else found
    if len(found) < 2:
        return None
    return (
        f"both onnxruntime {found['onnxruntime']} and onnxruntime-gpu {found['onnxruntime-gpu']} are installed;"
        " they share the import name onnxruntime, so the files of whichever was installed last overwrite the"
        " other's and the GPU providers may be missing — pip uninstall -y onnxruntime onnxruntime-gpu,"
        " then pip install 'specc[gpu]'"
    )


def resolve_providers(choice: str | None, available: list[str] | None = None) -> list[str]:
    """The providers for `--provider cpu|cuda|tensorrt` (None: CUDA when present, else CPU);
    a one-line UserError when onnxruntime here lacks the one asked for."""
    if choice is None:
        return default_providers()
    if choice not in PROVIDERS:
        raise UserError(f"--provider {choice}: expected one of {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[choice]
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    assert available is not None
    if wanted[0] in available:
        return [p for p in wanted if p in available]
    conflict = distribution_conflict()
    if conflict:
        raise UserError(f"--provider {choice}: {conflict}")
    raise UserError(
        f"--provider {choice}: this onnxruntime has no {wanted[0]} (it has {', '.join(available)})"
        " — for GPUs install onnxruntime-gpu in place of onnxruntime:"
        " pip uninstall -y onnxruntime && pip install 'specc[gpu]'"
    )


def check_provider(session, providers: list[str], source: str) -> None:
    """onnxruntime falls back to the CPU, with only a log line, when a GPU provider fails to
    start (no CUDA/cuDNN libraries, no device): say so instead of timing the CPU as a GPU."""
    used = session.get_providers()
    if providers[0] != CPU and providers[0] not in used:
        raise UserError(
            f"{source}: onnxruntime could not start {providers[0]} (it fell back to {', '.join(used)}) —"
            " are the CUDA/cuDNN libraries of this onnxruntime-gpu installed and a GPU visible?"
        )


def cpu_count() -> int:
    """Cores this process may run on (a container's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def session_options(threads: int | None = None, spin: bool = False):
    """Options that make a small CNN fast on CPU: every graph optimisation (conv+activation
    fusion, NCHWc layouts), one intra-op thread per core, nodes run in order, and no
    inter-op pool (a chain of convs has no parallel branches worth a second pool).

    The intra-op threads sleep between ops instead of spinning (`spin=False`): on a machine
    that runs anything else, a spinning worker burns the time slice the thread it waits for
    needs — ALL-CNN-C at batch 1, 2 threads, load 9 on 2 cores: 18.2 ms spinning, 2.4 ms not
    (docs/deploy.md); on idle cores spinning saves a few microseconds per op."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
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
    providers = providers or default_providers()
    try:
        session = ort.InferenceSession(model, sess_options=session_options(threads), providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unexported classes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{source}: onnxruntime cannot load this model ({first})") from None
    check_provider(session, providers, source)
    return session


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
