"""Parity, proven: onnxruntime on the emitted model and the PyTorch module agree within 1e-4
on the same weights and inputs for every spec in specs/; the generated .py matches
`specc.build` exactly; random valid specs agree too, layer by layer in shape."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specc
from specc import build
from specc.errors import UserError
from specc.ops import OPS, ShapeError
from specc_onnx import emit, layer_values, to_bytes, verify
from specc_onnx.runtime import make_session
from specc_torch import TORCH_OPS
from specc_torch.codegen import generate
from specc_torch.weights import state_dict_numpy

CPU = ["CPUExecutionProvider"]  # parity is defined on the CPU provider (CUDA may use TF32)

SPECS = sorted(Path(__file__).resolve().parent.parent.joinpath("specs").glob("*.yaml"))
BIG = ("allcnn_large", "allcnn_imagenet")
TOLERANCE = 1e-4


def inputs(graph, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *graph.input_shape, generator=torch.Generator().manual_seed(seed))


def ort_run(model, x: torch.Tensor) -> np.ndarray:
    return make_session(to_bytes(model) if isinstance(model, onnx.ModelProto) else model, CPU).run(
        None, {"input": x.numpy()}
    )[0]


def torch_run(module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return module.eval()(x).numpy()


def randomise_batch_norm(module, seed: int) -> None:
    """Non-trivial running statistics and affine parameters, so folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = sub.num_features
                sub.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                sub.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                if sub.affine:
                    sub.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    sub.bias.copy_(torch.randn(n, generator=g) * 0.2)


def test_every_op_is_handled_by_both_backends():
    from specc_onnx import OP_TABLE

    assert set(OP_TABLE) == set(OPS) == set(TORCH_OPS)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_onnxruntime_matches_torch_on_every_spec(path):
    module = build(path, seed=1)
    randomise_batch_norm(module, 2)
    graph = module.graph
    model = emit(graph, state_dict_numpy(module))
    if path.stem in BIG:
        verify(model, graph, to_bytes(model))  # test_onnx_emit skips these two: emitting them twice is slow
    x = inputs(graph, 1 if path.stem in BIG else 2)
    np.testing.assert_allclose(ort_run(model, x), torch_run(module, x), atol=TOLERANCE, rtol=0)


def randomise_biases(module, seed: int) -> None:
    """Non-zero biases (initialisation leaves them 0), so the folded bias is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (torch.nn.Conv2d, torch.nn.Linear)) and sub.bias is not None:
                sub.bias.copy_(torch.randn(sub.bias.shape, generator=g) * 0.5)


# Every kind of fold: a conv with its own bias, a grouped strided conv without one followed by
# two batch_norms in a row (the second without scale and shift), linear layers and flat
# batch_norms, a batch_norm as the last layer.
FOLD_CHAIN = """
name: fold_chain
input: {channels: 3, size: 8}
classes: 5
layers:
  - {name: c1, type: conv, filters: 6, kernel: 3, padding: same}
  - {name: c1_bn, type: batch_norm}
  - {type: relu}
  - {name: c2, type: conv, filters: 6, kernel: 3, groups: 3, stride: 2, bias: false}
  - {name: c2_bn, type: batch_norm}
  - {name: c2_bn2, type: batch_norm, affine: false}
  - {type: flatten}
  - {name: fc1, type: linear, units: 7}
  - {type: batch_norm}
  - {type: leaky_relu, slope: 0.1}
  - {name: fc2, type: linear, units: 5}
  - {type: batch_norm, eps: 0.01}
"""


@pytest.mark.parametrize("spec", ["resnet_tiny", "fold_chain"])
@pytest.mark.parametrize("fold", [True, False], ids=["folded", "no-fold"])
def test_batch_norm_parity_folded_and_not(fold, spec):
    module = build(FOLD_CHAIN if spec == "fold_chain" else SPECS[0].parent / f"{spec}.yaml", seed=3)
    randomise_batch_norm(module, 4)
    randomise_biases(module, 5)
    model = emit(module.graph, state_dict_numpy(module), fold_bn=fold)
    has_bn = any(n.op_type == "BatchNormalization" for n in model.graph.node)
    assert has_bn is not fold
    x = inputs(module.graph, 3)
    np.testing.assert_allclose(ort_run(model, x), torch_run(module, x), atol=TOLERANCE, rtol=0)


def test_probs_match_torch_probs():
    module = build(SPECS[0].parent / "allcnn_c.yaml", seed=0, output="probs")
    model = emit(module.graph, state_dict_numpy(module), output="probs", batch=2)
    x = inputs(module.graph, 2)
    np.testing.assert_allclose(ort_run(model, x), torch_run(module, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["allcnn_c", "resnet_tiny", "model_a"])
def test_generated_source_matches_build_exactly(name, tmp_path):
    module = build(SPECS[0].parent / f"{name}.yaml", seed=5)
    randomise_batch_norm(module, 6)
    namespace: dict = {}
    exec(compile(generate(module.graph, "Net"), f"{name}.py", "exec"), namespace)
    standalone = namespace["Net"](seed=5)
    assert all(
        torch.equal(a, b)
        for a, b in zip(standalone.state_dict().values(), build(module.graph, seed=5).state_dict().values())
    )
    standalone.load_state_dict(module.state_dict())
    x = inputs(module.graph, 2)
    assert np.array_equal(torch_run(standalone, x), torch_run(module, x))


# -- random valid specs through both backends ------------------------------------------------
def _fits(kind: str, params: dict, shape) -> tuple | None:
    """The output shape when the layer is valid on `shape`, else None."""
    try:
        return OPS[kind].model_validate({"type": kind, **params}).output_shape([shape])
    except (ShapeError, ValueError):
        return None


@st.composite
def random_specs(draw):
    """A stack of every op kind with random geometry, an optional residual or concat
    branch, and a global-pool or flatten/linear head; returns spec text."""
    channels, size, classes = draw(st.sampled_from([1, 3])), draw(st.integers(5, 14)), draw(st.integers(2, 6))
    shape, layers, names = (channels, size, size), [], []

    def push(kind, params, **extra):
        nonlocal shape
        out = _fits(kind, params, shape)
        if out is None:
            return False
        name = f"l{len(layers)}"
        layers.append({"name": name, "type": kind, **params, **extra})
        names.append((name, out))
        shape = out
        return True

    for _ in range(draw(st.integers(1, 6))):
        kind = draw(
            st.sampled_from(["conv", "max_pool", "avg_pool", "batch_norm", "relu", "leaky_relu", "dropout", "branch"])
        )
        k = draw(st.integers(1, 3))
        if kind == "conv":
            groups = draw(st.sampled_from([1, shape[0]]))
            push(
                "conv",
                {
                    "filters": shape[0] * draw(st.integers(1, 3)) if groups > 1 else draw(st.integers(1, 6)),
                    "kernel": [k, draw(st.integers(1, 3))],
                    "stride": draw(st.integers(1, 2)),
                    "padding": draw(st.sampled_from(["valid", 1, [0, 1]] + (["same"] if k % 2 else []))),
                    "dilation": draw(st.integers(1, 2)),
                    "groups": groups,
                    "bias": draw(st.booleans()),
                    "activation": draw(st.sampled_from(["relu", "leaky_relu", "none"])),
                    "slope": 0.2,
                },
            )
        elif kind in ("max_pool", "avg_pool"):
            params = {"kernel": k + 1, "stride": draw(st.integers(1, 3)), "padding": draw(st.integers(0, (k + 1) // 2))}
            params["ceil_mode"] = draw(st.booleans())
            if kind == "avg_pool":
                params["count_include_pad"] = draw(st.booleans())
            push(kind, params)
        elif kind == "branch" and len(names) >= 1:
            src, src_shape = names[-1]
            if push("conv", {"filters": src_shape[0], "kernel": 1, "activation": "relu"}):
                merge = draw(st.sampled_from(["add", "concat"]))
                layers.append({"name": f"l{len(layers)}", "type": merge, "inputs": [src, layers[-1]["name"]]})
                shape = (src_shape[0] * (2 if merge == "concat" else 1), *src_shape[1:])
                names.append((layers[-1]["name"], shape))
        elif kind in ("relu", "batch_norm"):
            push(kind, {})
        elif kind == "leaky_relu":
            push(kind, {"slope": 0.1})
        elif kind == "dropout":
            push(kind, {"rate": 0.3})
    if draw(st.booleans()):
        push("conv", {"filters": classes, "kernel": 1})
        push("global_avg_pool", {})
    else:
        push("flatten", {})
        push("linear", {"units": 8, "activation": draw(st.sampled_from(["relu", "none"]))})
        if draw(st.booleans()):
            push("batch_norm", {})
        push("linear", {"units": classes})
    if draw(st.booleans()):
        push("softmax", {})
    spec = {"name": "random", "input": {"channels": channels, "size": size}, "classes": classes, "layers": layers}
    return yaml.safe_dump(spec, sort_keys=False)


@settings(
    max_examples=int(os.environ.get("SPECC_HYPOTHESIS_EXAMPLES", 25)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(random_specs(), st.booleans())
def test_random_specs_agree_layer_by_layer(text, fold):
    module = build(text, seed=0)
    randomise_batch_norm(module, 1)
    graph = module.graph
    shapes = specc.check(graph).report.shapes
    weights = state_dict_numpy(module)
    try:
        model = emit(graph, weights, fold_bn=fold)
    except UserError as exc:  # a pool whose ceil rounding only opset 22 expresses
        assert "--opset 22" in str(exc)
        model = emit(graph, weights, fold_bn=fold, opset=22)
    verify(model, graph)
    x = inputs(graph, 2)
    # Every layer's value as an extra output: onnxruntime's actual shapes, not inference's.
    values = layer_values(graph, model)
    extra = [v for v in values.values() if v != model.graph.output[0].name]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(v) for v in extra)
    session = make_session(to_bytes(model), CPU)
    results = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x.numpy()})))
    for layer, value in values.items():
        assert results[value].shape == (2, *shapes[layer]), layer
    live = sorted({s.layer for s in module.steps})
    with torch.inference_mode():
        out, captured = module.eval()(x, capture=live)
    for name, tensor in captured.items():
        assert tuple(tensor.shape) == (2, *shapes[name]), name
    np.testing.assert_allclose(results[model.graph.output[0].name], out.numpy(), atol=TOLERANCE, rtol=0)


def _pool_cases(size: int):
    for k in (1, 2, 3):
        for s in (1, 2, 3):
            for p in range(k // 2 + 1):
                for ceil in (False, True):
                    params = {"kernel": k, "stride": s, "padding": p, "ceil_mode": ceil}
                    for kind, extra in (("max_pool", {}), ("avg_pool", {"count_include_pad": False})):
                        if _fits(kind, {**params, **extra}, (2, size, size)):
                            yield kind, {**params, **extra}
                    if _fits("avg_pool", {**params, "count_include_pad": True}, (2, size, size)):
                        yield "avg_pool", {**params, "count_include_pad": True}


def _pool_reference(x: torch.Tensor, kind: str, params: dict) -> torch.Tensor:
    import torch.nn.functional as F

    k, s, p, ceil = params["kernel"], params["stride"], params["padding"], params["ceil_mode"]
    if kind == "max_pool":
        return F.max_pool2d(x, k, s, p, ceil_mode=ceil)
    return F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=params["count_include_pad"])


@pytest.mark.parametrize("size", [3, 4, 5, 6, 7])
def test_pool_geometry_grid_matches_pytorch(size):
    """Every small pooling geometry, ceil rounding and padding counts included, against
    torch.nn.functional directly (ONNX's pre-22 ceil rule is why this exists): one model per
    input size, a branch per geometry, all flattened and concatenated."""
    cases = list(_pool_cases(size))
    layers, flats = [], []
    for i, (kind, params) in enumerate(cases):
        layers += [{"name": f"p{i}", "type": kind, "inputs": "input", **params}, {"name": f"f{i}", "type": "flatten"}]
        flats.append(f"f{i}")
    groups = [flats[i : i + 32] for i in range(0, len(flats), 32)]
    layers += [{"name": f"cat{j}", "type": "concat", "inputs": g + [g[0]]} for j, g in enumerate(groups)]
    layers.append({"name": "all", "type": "concat", "inputs": [f"cat{j}" for j in range(len(groups))] + ["cat0"]})
    x = torch.randn(2, 2, size, size, generator=torch.Generator().manual_seed(size))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: waking a thread pool per call costs more than the work
    try:
        pieces = [_pool_reference(x, kind, params).flatten(1) for kind, params in cases]
    finally:
        torch.set_num_threads(threads)
    grouped = [torch.cat([pieces[flats.index(f)] for f in g + [g[0]]], 1) for g in groups]
    expected = torch.cat(grouped + grouped[:1], 1)
    spec = {"name": "pools", "input": {"channels": 2, "size": size}, "classes": expected.shape[1], "layers": layers}
    graph = specc.load(yaml.safe_dump(spec, sort_keys=False))
    for opset in (17, 22):
        model = emit(graph, {}, opset=opset)
        verify(model, graph)
        np.testing.assert_allclose(ort_run(model, x), expected.numpy(), atol=1e-6)


def test_mixed_ceil_pooling_needs_opset_22():
    """Height drops its last ceil window (6 -> 2), width gains one (7 -> 3): exact only at 22."""
    text = """
name: mixed
input: {channels: 1, size: [6, 7]}
classes: 6
layers:
  - {type: max_pool, kernel: 2, stride: 3, ceil_mode: true}
  - {type: flatten}
"""
    graph = specc.load(text)
    with pytest.raises(UserError, match="--opset 22"):
        emit(graph, {}, opset=17)
    model = emit(graph, {}, opset=22)
    verify(model, graph)
    x = torch.randn(1, 1, 6, 7)
    expected = torch.nn.functional.max_pool2d(x, 2, 3, ceil_mode=True).flatten(1)
    np.testing.assert_allclose(ort_run(model, x), expected.numpy())
