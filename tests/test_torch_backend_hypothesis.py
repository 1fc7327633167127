"""Random small valid specs (conv, pools, batch_norm, relu, dropout, linear, add, concat)
through the PyTorch backend: every layer's actual output shape equals shape inference's, the
parameter count equals the report's, and the generated code is bit-identical and initialises
the same weights."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import specc
from specc import build
from specc.errors import SpecError
from specc.shapes import infer
from specc_torch.codegen import generate

_DIR = Path(tempfile.mkdtemp(prefix="specc_hypothesis_"))


def _conv(draw, name: str, channels: int, size: int) -> dict:
    kernel = draw(st.integers(1, min(3, size)))
    layer = {"name": name, "type": "conv", "filters": draw(st.integers(1, 6)), "kernel": kernel}
    layer["stride"] = draw(st.integers(1, 2))
    layer["padding"] = draw(st.sampled_from(["valid", 0, 1] + (["same"] if kernel % 2 else [])))
    layer["activation"] = draw(st.sampled_from(["relu", "leaky_relu", "none"]))
    layer["bias"] = draw(st.booleans())
    layer["init"] = draw(st.sampled_from(["he", "xavier", "gaussian", "torch"]))
    if channels % 2 == 0 and draw(st.booleans()):
        layer["groups"], layer["filters"] = 2, 2 * draw(st.integers(1, 3))
    return layer


def _pool(draw, name: str, size: int) -> dict:
    kernel = draw(st.integers(1, min(3, size)))
    layer = {"name": name, "type": draw(st.sampled_from(["max_pool", "avg_pool"])), "kernel": kernel}
    layer["stride"] = draw(st.integers(1, 2))
    layer["padding"] = draw(st.integers(0, kernel // 2))
    layer["ceil_mode"] = draw(st.booleans())
    if layer["type"] == "avg_pool":
        layer["count_include_pad"] = draw(st.booleans())
    return layer


@st.composite
def specs(draw) -> str:
    """YAML text of a small network; most draws are valid, shape inference decides."""
    channels, size = draw(st.integers(1, 3)), draw(st.integers(3, 9))
    layers: list[dict] = []
    last = "input"
    for i in range(draw(st.integers(1, 6))):
        name = f"l{i}"
        kind = draw(st.sampled_from(["conv", "pool", "batch_norm", "relu", "leaky_relu", "dropout", "branch"]))
        if kind == "conv":
            layers.append(_conv(draw, name, channels, size))
        elif kind == "pool":
            layers.append(_pool(draw, name, size))
        elif kind == "branch":  # two 1x1/3x3 'same' convs from the current value, added or concatenated
            filters = draw(st.integers(1, 4))
            a = {"name": f"{name}a", "type": "conv", "filters": filters, "kernel": 1, "inputs": last}
            b = {"name": f"{name}b", "type": "conv", "filters": filters, "kernel": 3, "padding": "same"}
            b["inputs"] = last
            join = draw(st.sampled_from(["add", "concat"]))
            operands = draw(st.permutations([a["name"], b["name"]] + ([last] if join == "concat" else [])))
            layers += [a, b, {"name": name, "type": join, "inputs": list(operands)}]
        elif kind == "leaky_relu":
            layers.append({"name": name, "type": kind, "slope": draw(st.sampled_from([0.01, 0.2]))})
        elif kind == "dropout":
            layers.append({"name": name, "type": kind, "rate": 0.5})
        else:
            layers.append({"name": name, "type": kind})
        last = name
    head = draw(st.sampled_from(["global_avg_pool", "flatten"]))
    layers.append({"name": "head", "type": head})
    if draw(st.booleans()):
        layers.append({"name": "bn_flat", "type": "batch_norm"})
    layers.append({"name": "fc", "type": "linear", "units": 3, "activation": draw(st.sampled_from(["none", "relu"]))})
    if draw(st.booleans()):
        layers.append({"name": "prob", "type": "softmax"})
    spec = {"name": "random", "input": {"channels": channels, "size": size}, "classes": 3, "layers": layers}
    return yaml.safe_dump(spec, sort_keys=False)


def _generated_class(source: str, n: int):
    path = _DIR / f"net_{n}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"net_{n}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Net


_counter = iter(range(10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(text=specs(), seed=st.integers(0, 2**31))
def test_random_specs_build_with_inferred_shapes_and_generate_identical_code(text, seed):
    try:
        graph = specc.load(text)
        report = infer(graph)
    except SpecError:
        event("invalid draw")
        return  # an invalid draw (a window larger than its input, ...): shape inference says why
    model = build(graph, seed=seed, output="probs").eval()
    x = torch.randn(2, *graph.input_shape)
    out, captured = model(x, capture=model.layer_names)
    for name, tensor in captured.items():
        assert tuple(tensor.shape) == (2, *report.shapes[name]), name
    assert sum(p.numel() for p in model.parameters()) == report.total_params
    net = _generated_class(generate(graph, "Net", output="probs"), next(_counter))(seed=seed).eval()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), model.state_dict().values()))
    assert torch.equal(net(x), out)
