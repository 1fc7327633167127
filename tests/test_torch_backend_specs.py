"""Every spec in specs/ through the PyTorch backend and its code generator: actual per-layer
shapes equal shape inference's, parameter counts equal the report's, state_dict keys are the
layer names, and the generated standalone file (which imports nothing of specc) gives
bit-identical outputs."""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from specc import build
from specc.emit import spec_hash
from specc.shapes import infer
from specc_torch.codegen import class_name_for, generate

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(ROOT.glob("specs/*.yaml"))
_GENERATED = Path(tempfile.mkdtemp(prefix="specc_codegen_"))


@functools.cache
def _run(path: Path):
    """(model with output='probs', input, output, every layer's output) in eval mode, at batch 1
    (allcnn_large has 77M parameters and a 126x126 input)."""
    model = build(path, output="probs").eval()
    x = torch.randn(1, *model.graph.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, captured = model(x, capture=model.layer_names)
    return model, x, out, captured


def _load_generated(source: str, module_name: str):
    """Import generated source from a file while `specc` cannot be imported at all."""
    path = _GENERATED / f"{module_name}.py"
    path.write_text(source)
    blocked = {name: sys.modules.get(name) for name in ("specc", "specc_torch")}
    sys.modules.update(dict.fromkeys(blocked))  # None: `import specc` raises ImportError
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, value in blocked.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
    return module


def _dims(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["B", *map(str, shape)]) + ")"


def _expected_keys(graph) -> list[str]:
    keys = []
    for node in graph.nodes:
        op = node.op
        if node.type in ("conv", "linear"):
            keys += [f"{node.name}.weight"] + ([f"{node.name}.bias"] if op.bias else [])
        elif node.type == "batch_norm":
            affine = [f"{node.name}.weight", f"{node.name}.bias"] if op.affine else []
            keys += affine + [f"{node.name}.{b}" for b in ("running_mean", "running_var", "num_batches_tracked")]
    return keys


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_shapes_parameters_and_state_dict_keys_match_the_spec(path):
    model, x, out, captured = _run(path)
    report = infer(model.graph)
    assert list(captured) == list(model.layer_names)
    for name, tensor in captured.items():
        assert tuple(tensor.shape) == (x.shape[0], *report.shapes[name]), name
    assert out.shape == (x.shape[0], model.graph.classes)
    assert sum(p.numel() for p in model.parameters()) == report.total_params
    assert list(model.state_dict()) == _expected_keys(model.graph)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_generated_code_is_standalone_and_bit_identical(path):
    model, x, out, _ = _run(path)
    source = generate(model.graph, output="probs")
    imports = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
        for n in ast.walk(ast.parse(source))
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    assert imports == {"__future__", "torch"}
    first = model.steps[0].layer
    assert spec_hash(model.graph) in source and f"# {first}: {_dims(model.shapes[first])}" in source
    cls = getattr(_load_generated(source, f"gen_{path.stem}"), class_name_for(model.graph.name))
    # The weights are overwritten below; the next test checks the generated initialisation.
    net = type("NoInit", (cls,), {"reset_parameters": lambda self, seed=0: None})()
    assert list(net.state_dict()) == list(model.state_dict())
    net.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(net.eval()(x), out)


@pytest.mark.parametrize("path", [p for p in SPECS if p.stem in ("allcnn_c", "resnet_tiny")], ids=lambda p: p.stem)
def test_generated_reset_parameters_draws_the_same_weights_as_build(path):
    model, *_ = _run(path)
    cls = getattr(_load_generated(generate(model.graph), f"init_{path.stem}"), class_name_for(model.graph.name))
    built, generated = model.state_dict(), cls(seed=0).state_dict()
    assert all(torch.equal(built[k], generated[k]) for k in built)


def test_generated_code_matches_in_training_mode_with_dropout_forward_and_backward():
    model = build(ROOT / "specs" / "allcnn_c.yaml", seed=3)  # logits: the softmax is dropped
    cls = _load_generated(generate(model.graph, "Net"), "gen_train").Net
    net = cls(seed=3)
    x = torch.randn(4, 3, 32, 32)
    results = []
    for m in (model, net):
        torch.manual_seed(11)  # the same dropout masks, drawn in the same order
        out = m.train()(x)
        out.square().sum().backward()
        results.append((out, m.conv1.weight.grad))
    (out_a, grad_a), (out_b, grad_b) = results
    assert out_a.shape == (4, 10) and torch.equal(out_a, out_b) and torch.equal(grad_a, grad_b)


def test_generated_code_keeps_the_relu_seam():
    model = build(ROOT / "specs" / "allcnn_c.yaml").eval()
    cls = _load_generated(generate(model.graph, "Seam"), "gen_seam").Seam
    swapped = type("Swapped", (cls,), {"relu_rule": staticmethod(torch.abs)})
    plain, other = cls().eval(), swapped().eval()
    x = torch.randn(2, 3, 32, 32)
    with model.activation_rules(relu=torch.abs):
        assert torch.equal(other(x), model(x))
    assert torch.equal(plain(x), model(x)) and not torch.equal(other(x), plain(x))


BRANCHES = """
name: branches
input: {channels: 3, size: 8}
classes: 4
layers:
  - {name: stem, type: conv, filters: 4, kernel: 3, padding: same, activation: relu}
  - {name: a, type: conv, filters: 4, kernel: 1}
  - {name: b, type: conv, filters: 4, kernel: 3, padding: same, inputs: stem}
  - {name: sum, type: add, inputs: [b, stem, a]}
  - {name: unused, type: conv, filters: 2, kernel: 1, inputs: stem}
  - {name: cat, type: concat, inputs: [sum, input]}
  - {name: gap, type: global_avg_pool}
  - {name: fc, type: linear, units: 4}
"""


def test_branches_keep_operand_order_name_live_values_and_skip_dead_layers():
    model = build(BRANCHES).eval()
    source = generate(model.graph, "Branches")
    assert "sum_ = b + stem + a" not in source and "x = x + stem + a  # sum: (B, 4, 8, 8)" in source
    assert "x_input = x" in source and "torch.cat([x, x_input], dim=1)" in source and "self.unused(" not in source
    net = _load_generated(source, "gen_branches").Branches().eval()
    net.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    out, acts = model(x, capture={"stem", "a", "b"})
    assert torch.equal(net(x), out)
    assert torch.equal(acts["b"] + acts["stem"] + acts["a"], model(x, capture={"sum"})[1]["sum"])
    with pytest.raises(ValueError, match="'unused' does not feed the network output"):
        model(x, capture={"unused"})
