"""`specc import`: an ONNX model, or a PyTorch module through ONNX export, to a spec and a
specc checkpoint of its weights. The mirror image of `specc compile`; the patterns that read
the ONNX graph live in the ONNX backend (`specc_onnx.importer`)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

from specc.checkpoint_io import CHECKPOINT_FORMAT, WEIGHTS_MAP_FORMAT
from specc.commands.common import add_command, refuse_stdout
from specc.emit import spec_hash, to_yaml
from specc.errors import UserError
from specc.fileio import write_files
from specc.ir import Graph
from specc.spec import load_graph_text
from specc.summary import human_bytes
from specc.version import __version__

DEFAULT_INPUT = "3x224x224"
# Graph names exporters write when the model had none: the file's or module's name is better.
_GENERIC_NAMES = ("main_graph", "torch_jit", "torch-jit-export", "")


def register(sub) -> None:
    p = add_command(
        sub,
        "import",
        "import an ONNX model (or a PyTorch module) as a spec and a checkpoint",
        """
specc import model.onnx                                # model.yaml + model.pt
specc import model.onnx -o specs/net.yaml --weights-out runs/net/imported.pt --name net
specc import --torch mynets.py:make_model --input 3x32x32
specc import --torch torchvision.models:alexnet --input 3x224x224 --force
""",
        description=(
            "Read an ONNX model (opset 11 or newer; checked, shapes inferred strictly) and write the"
            " spec it computes, with a comment saying where it came from, and a specc checkpoint of its"
            " weights. Each ONNX node is matched by one pattern (conv with its activation, linear,"
            " pools, batch_norm, add, concat, ...); a node specc cannot represent exactly is refused in"
            " one line naming it. --torch exports a PyTorch module to ONNX in memory and imports that."
            " Both files are written atomically, together, and never overwritten without --force."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("model", nargs="?", metavar="MODEL.onnx", help="the ONNX model to import")
    source.add_argument(
        "--torch",
        metavar="MODULE:CALLABLE",
        help="a PyTorch module to export and import: path/to/file.py:make_model or package.module:make_model"
        " (a module instance, a class or a function returning the module)",
    )
    p.add_argument(
        "--input",
        default=None,
        metavar="CxHxW",
        help=f"the example input of --torch, per sample (default {DEFAULT_INPUT})",
    )
    p.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument of the --torch callable, the value read as YAML (repeatable): --arg num_classes=10",
    )
    p.add_argument("-o", "--out", metavar="SPEC.yaml", help="the spec to write (default: <name>.yaml)")
    p.add_argument("--weights-out", metavar="CKPT", help="the checkpoint to write (default: the spec's path, .pt)")
    p.add_argument("--name", help="the network's name (default: the ONNX graph's, the file's or the module's)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="for a model with nodes specc cannot map: write the spec up to the last layer before the"
        " first of them (without it, nothing is written and each such node is listed)",
    )
    p.add_argument("--json", action="store_true", help="print what was imported and written as one JSON document")
    p.set_defaults(func=run)


def run(args) -> int:
    refuse_stdout("-o", args.out, "a spec and its checkpoint")
    refuse_stdout("--weights-out", args.weights_out, "a checkpoint")
    if args.input is not None and not args.torch:
        raise UserError("--input: only with --torch (an ONNX model records its input shape)")
    if args.arg and not args.torch:
        raise UserError("--arg: only with --torch (the arguments of its callable)")
    if args.name is not None and not args.name.isidentifier():
        raise UserError(f"--name {args.name}: expected letters, digits and _ (not starting with a digit)")
    if args.torch:
        kwargs = _parse_args(args.arg)
        result, origin, keys = _from_torch(
            args.torch, args.input or DEFAULT_INPUT, args.name, args.allow_partial, kwargs
        )
    else:
        (result, origin), keys = _from_onnx(Path(args.model), args.name, args.allow_partial), None
    graph, weights = result.graph, result.weights
    spec_path = Path(args.out) if args.out else Path(f"{graph.name}.yaml")
    weights_path = Path(args.weights_out) if args.weights_out else spec_path.with_suffix(".pt")
    map_path = spec_path.with_suffix(".map.yaml")
    _check_destinations([spec_path, weights_path, *([map_path] if keys else [])], args.force)

    spec_text, graph = _spec_text(result)
    header = f"# imported by specc {__version__} from {origin}\n# weights: {weights_path}\n"
    checkpoint = _checkpoint(graph, weights, spec_text)
    import torch

    files: dict = {spec_path: (header + spec_text).encode("utf-8"), weights_path: lambda f: torch.save(checkpoint, f)}
    if keys:
        files[map_path] = _map_text(keys, origin, spec_path).encode("utf-8")
    sizes = write_files(files)  # all or nothing
    if args.json:
        print(json.dumps(_report(graph, weights, origin, result.notes, sizes), indent=2))
        return 0
    print(_summary(graph, weights, origin))
    for note in result.notes:
        print(f"  note: {note}")
    print("wrote:")
    for path, size in sizes.items():
        print(f"  {path}  ({human_bytes(size)})")
    return 0


def _from_onnx(path: Path, name: str | None, allow_partial: bool):
    from specc_onnx.importer import import_model

    return import_model(path, name=name or _default_name(path), allow_partial=allow_partial), str(path)


def _default_name(path: Path) -> str | None:
    """The ONNX graph's own name unless it is an exporter's placeholder; then the file's."""
    import onnx

    if not path.is_file():  # a FIFO or a device would block or never end: the importer refuses it
        return None
    try:
        graph_name = onnx.load(str(path), load_external_data=False).graph.name
    except Exception:  # noqa: BLE001 - the importer reports an unreadable file itself
        return None
    return path.stem if graph_name in _GENERIC_NAMES else None


def _from_torch(ref: str, input_text: str, name: str | None, allow_partial: bool, kwargs: dict):
    try:
        import torch

        from specc_onnx.importer import import_model
        from specc_torch.export import to_onnx_bytes
    except ImportError as exc:
        raise UserError(f"--torch needs PyTorch and onnx ({exc}) — pip install 'specc[torch]'") from None
    shape = _parse_input(input_text)
    model = load_module(ref, kwargs)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn((1, *shape), generator=generator)
    try:
        data = to_onnx_bytes(model, example)
    except UserError as exc:
        raise UserError(f"--torch {ref}: {exc}") from None
    default = type(model).__name__
    result = import_model(data, name=name or default, label=f"--torch {ref}", allow_partial=allow_partial)
    return result, f"PyTorch {ref} (exported to ONNX, input {input_text})", _weights_map(result, model)


def _weights_map(result, model) -> dict[str, str] | None:
    """spec key -> the module's state_dict key, for every weight of the spec, when each one is
    that state_dict entry bit for bit (a batch norm folded by the exporter is not: no map)."""
    import numpy as np

    state = model.state_dict()
    keys = {}
    for key, array in result.weights.items():
        layer, suffix = key.split(".", 1)
        source = f"{result.sources[layer]}.{suffix}" if layer in result.sources else None
        tensor = state.get(source) if source else None
        if tensor is None or tuple(tensor.shape) != array.shape or not np.array_equal(tensor.numpy(), array):
            return None
        keys[key] = source
    return keys or None


def _map_text(keys: dict[str, str], origin: str, spec_path: Path) -> str:
    """The weights map `--weights-map` reads (`specc.checkpoint_io.read_weights_map`)."""
    import yaml

    head = (
        f"# the state_dict keys of {spec_path} (left) in the source model's naming (right), from {origin}\n"
        f"# use: specc compile {spec_path} --weights STATE_DICT.pt --weights-map {spec_path.with_suffix('.map.yaml')}\n"
    )
    body = {"format": WEIGHTS_MAP_FORMAT, "keys": keys}
    return head + yaml.safe_dump(body, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _parse_args(items: list[str]) -> dict:
    """--arg KEY=VALUE ... as keyword arguments, each value read as YAML (10, 0.5, true, [1, 2], text)."""
    import yaml

    kwargs = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--arg {item}: expected KEY=VALUE with a Python name as KEY, e.g. --arg num_classes=10")
        try:
            kwargs[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"--arg {item}: the value is not valid YAML") from None
    return kwargs


def _parse_input(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--input {text}: expected CxHxW with positive integers, e.g. 3x224x224")
    c, h, w = (int(p) for p in parts)
    if c * h * w > _MAX_INPUT_VALUES:  # the trace runs the model on it: 3x100000x100000 would need 120 GB
        raise UserError(f"--input {text}: {c * h * w} values per image — at most {_MAX_INPUT_VALUES} (512 MiB)")
    return c, h, w


_MAX_INPUT_VALUES = 1 << 27


def load_module(ref: str, kwargs: dict | None = None):
    """The torch.nn.Module that `ref` (`path/to/file.py:name` or `package.module:name`) names:
    a module instance, or a class or function called with `kwargs` (--arg; none by default).
    Any error in the user's code is one line naming the module."""
    from torch import nn

    where, sep, attr = ref.rpartition(":")
    if not sep or not where or not attr.isidentifier():
        raise UserError(f"--torch {ref}: expected MODULE:CALLABLE, e.g. nets.py:make_model or mypkg.nets:make_model")
    module = _import_user_module(ref, where)
    if not hasattr(module, attr):
        raise UserError(f"--torch {ref}: {where} has no '{attr}'")
    obj = getattr(module, attr)
    if isinstance(obj, nn.Module) and kwargs:
        raise UserError(f"--arg: --torch {ref} is a module instance, which takes no arguments")
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise UserError(f"--torch {ref}: '{attr}' is neither a module nor callable")
        call = f"{attr}({', '.join(f'{k}={v!r}' for k, v in (kwargs or {}).items())})"
        try:
            obj = obj(**(kwargs or {}))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code (sys.exit(0) too): one line
            raise UserError(f"--torch {ref}: calling {call} fails: {_one_line(exc)}") from None
    if not isinstance(obj, nn.Module):
        raise UserError(f"--torch {ref}: {attr}() returns {type(obj).__name__}, expected a torch.nn.Module")
    return obj


def _import_user_module(ref: str, where: str):
    is_file = where.endswith(".py") or "/" in where or "\\" in where
    path = Path(where)
    if is_file and not path.is_file():
        raise UserError(f"--torch {ref}: {where}: no such file")
    folder = str(path.resolve().parent) if is_file else str(Path.cwd())
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # so that the user's module can import its neighbours
    try:
        if not is_file:
            return importlib.import_module(where)
        spec = importlib.util.spec_from_file_location(f"specc_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise UserError(f"--torch {ref}: {where}: not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(spec.name, None)
            raise
        return module
    except UserError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name == where or (exc.name and where.startswith(exc.name + ".")):
            raise UserError(f"--torch {ref}: no module named {where}") from None
        raise UserError(f"--torch {ref}: importing {where} fails: {_one_line(exc)}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code: one line naming it
        raise UserError(f"--torch {ref}: importing {where} fails: {_one_line(exc)}") from None
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _check_destinations(paths: list[Path], force: bool) -> None:
    if len({p.resolve() for p in paths}) < len(paths):
        raise UserError(f"{paths[0]}: the spec and the checkpoint would be the same file — pass --weights-out")
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise UserError(f"{', '.join(folders)}: a folder is in the way of the file to write — remove or rename it")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise UserError(f"{', '.join(existing)} already {verb} — pass --force to overwrite")


def _spec_text(result) -> tuple[str, Graph]:
    """The text to write and the graph it loads as: the embedded spec's canonical text when the
    model carried one, else with `defaults` and `repeat` factored out (checked to load back
    to the same layers)."""
    from specc_onnx.importer.factor import factored_yaml

    if result.restored:
        return to_yaml(result.graph), result.graph
    text = factored_yaml(result.graph)
    return text, load_graph_text(text, "imported spec")


def _checkpoint(graph: Graph, weights: dict, spec_text: str) -> dict:
    """A specc checkpoint (`specc.checkpoint_io`): what `compile --weights`, `eval` and
    `train --init` read."""
    import numpy as np
    import torch

    # Shares the arrays' memory (no third copy of the weights): torch.save only reads them, so
    # that they are read-only views of the ONNX bytes does not matter.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        state = {key: torch.from_numpy(np.ascontiguousarray(array)) for key, array in weights.items()}
    return {"format": CHECKPOINT_FORMAT, "model": state, "spec": spec_text, "spec_hash": spec_hash(graph)}


def _counts(graph: Graph, weights: dict) -> tuple[Counter, int, int, tuple[int, ...]]:
    """Layers by type, parameters (as `specc summary` counts them), running statistics and the
    output shape — from one shape pass."""
    from specc.api import check

    report = check(graph).report
    params = report.total_params  # what `specc summary` counts: the source's parameters
    buffers = sum(int(a.size) for a in weights.values()) - params  # batch norm's running statistics
    return Counter(node.type for node in graph.nodes), params, buffers, report.shapes[graph.output.name]


def _report(graph: Graph, weights: dict, origin: str, notes, sizes: dict) -> dict:
    """`--json`: the import as data."""
    counts, params, buffers, out = _counts(graph, weights)
    return {
        "source": origin,
        "name": graph.name,
        "input": list(graph.input_shape),
        "output": list(out),
        "classes": graph.classes,
        "layers": len(graph.nodes),
        "layer_types": dict(counts.most_common()),
        "parameters": params,
        "running_statistics": buffers,
        "notes": [str(note) for note in notes],
        "files": {str(path): size for path, size in sizes.items()},
    }


def _summary(graph: Graph, weights: dict, origin: str) -> str:
    counts, params, buffers, out = _counts(graph, weights)
    kinds = ", ".join(f"{kind} {n}" for kind, n in counts.most_common())
    c, h, w = graph.input_shape
    classes = f", {graph.classes} classes" if graph.classes is not None else ""
    stats = f" (+{buffers:,} running statistics)" if buffers else ""
    return (
        f"imported {origin}\n"
        f"  {graph.name}: input {c}x{h}x{w} -> {'x'.join(map(str, out))}{classes};"
        f" {len(graph.nodes)} layers ({kinds}); {params:,} parameters{stats}"
    )
