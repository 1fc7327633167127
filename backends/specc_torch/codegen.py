"""Code generation: a spec as a standalone, readable PyTorch file that imports only torch.

The generated class has the same submodules (built from the same `ModuleSpec`s) and so the same
state_dict keys as `specc_torch.build`; its forward is straight-line code calling the same torch
functions in the same order (from the op table's `code` entries), so loading a built model's
state_dict into it gives bit-identical outputs. Its `reset_parameters(seed)` copies the
initialisation functions verbatim, so `Net(seed=s)` and `build(spec, seed=s)` start from the
same weights. The ReLU seam is there too: `relu_rule` / `leaky_rule` to override.
"""

from __future__ import annotations

import inspect
import keyword
import re

from specc.emit import spec_hash
from specc.ir import INPUT, Graph
from specc.shapes import infer
from specc_torch import init
from specc_torch.module import make_submodules, output_names, plan
from specc_torch.table import TORCH_OPS

INDENT = " " * 4
_RESERVED_VARS = {"x", "x_input", "self", "torch", "nn", "F", "g"}
# specc's own functions the forward calls (`broadcast_mul`): no layer variable may shadow one.
_RESERVED_VARS |= {helper.__name__ for op in TORCH_OPS.values() for helper in op.helpers}


def class_name_for(spec_name: str) -> str:
    """`allcnn_c` -> `AllcnnC`: the spec name in CamelCase."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", spec_name) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Net"
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"Net{name}"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["B", *map(str, shape)]) + ")"


def _docstring_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _variables(graph: Graph, steps, outputs: tuple[str, ...]) -> dict[str, str]:
    """The Python variable of each value: `x` while the network is a chain (a value read only
    by the very next step), the layer's own name where branches keep it alive longer."""
    uses: dict[str, list[int]] = {}
    for i, step in enumerate(steps):
        for src in step.inputs:
            uses.setdefault(src, []).append(i)
    for name in outputs:  # the return statement reads the outputs after the last step
        uses.setdefault(name, []).append(len(steps))
    names: dict[str, str] = {}
    taken = {n.name for n in graph.nodes} | _RESERVED_VARS
    for i, src in enumerate([INPUT] + [s.name for s in steps]):
        if uses.get(src, [i]) == [i]:  # read once, by the next step (or the returned value)
            names[src] = "x"
        elif src == INPUT:
            names[src] = "x_input"
        elif src.isidentifier() and not keyword.iskeyword(src) and src not in _RESERVED_VARS:
            names[src] = src
        else:
            var = re.sub(r"\W", "_", src) + "_out"  # e.g. a pre-activation value `conv1/conv`
            while var in taken:
                var += "_"
            taken.add(var)
            names[src] = var
    return names


def _forward_lines(graph: Graph, steps, shapes, outputs: tuple[str, ...]) -> list[str]:
    var = _variables(graph, steps, outputs)
    lines = [f"# x: {_shape(graph.input_shape)}"]
    if var[INPUT] != "x":
        lines.append(f"{var[INPUT]} = x")
    for step in steps:
        expr = TORCH_OPS[step.kind].code(step, [var[s] for s in step.inputs])
        lines.append(f"{var[step.name]} = {expr}  # {step.name}: {_shape(shapes[step.layer])}")
        dead = [var[s] for s in step.free if var[s] != "x"]
        if dead:
            lines.append(f"del {', '.join(dead)}")
    returned = [var[name] for name in outputs]
    lines.append(f"return {returned[0]}" if len(returned) == 1 else f"return ({', '.join(returned)})")
    return lines


def _returns(graph: Graph, output: str, outputs: tuple[str, ...], shapes) -> str:
    """What `forward` returns, in words, for the docstring."""
    last = outputs[-1]
    if len(outputs) > 1:
        listed = ", ".join(f"{name} {_shape(shapes[name])}" for name in outputs)
        return f"a tuple of {len(outputs)} outputs: {listed}"
    shape = _shape(shapes[last])
    if not graph.is_classifier:
        return f"{shape}, the output of layer '{last}'"
    what = "probabilities (softmax)" if output == "probs" and graph.output.op.makes_probabilities else "class scores"
    return f"{shape} {what}"


def _module_source(graph: Graph, report, name: str) -> str:
    node = graph.node(name)
    spec = TORCH_OPS[node.type].module(node.op, [report.shapes[s] for s in node.inputs])
    assert spec is not None, f"{name} is listed among the submodules, so its layer type has one"
    return spec.source()


def _init_lines(graph: Graph, modules) -> list[str]:
    lines = []
    for node in graph.nodes:
        rule = node.op.init_rule()
        if node.name in modules and rule is not None:
            lines.append(init.rule_source(node.name, rule))
    return lines


def _helpers(graph: Graph, report, steps) -> list:
    """specc's own torch code the file uses, each once: the helper modules of its layers
    (`ModuleSpec.helper`) and the functions its forward calls (`TorchOp.helpers`)."""
    found: dict = {}
    for node in graph.nodes:
        spec = TORCH_OPS[node.type].module(node.op, [report.shapes[s] for s in node.inputs])
        if spec is not None and spec.helper is not None:
            found[spec.helper] = None
    for step in steps:
        found.update(dict.fromkeys(TORCH_OPS[step.kind].helpers))
    return list(found)


def _init_functions(graph: Graph, helpers: list) -> str:
    rules = {rule[0] for n in graph.nodes if (rule := n.op.init_rule()) is not None}
    used = [f for name, f in init.INIT_FUNCTIONS.items() if name in rules]
    copied = [*([init.fill_, *used] if used else []), *helpers]
    if not copied:
        return "\n\n"
    return "\n\n" + "\n\n\n".join(inspect.getsource(f).strip() for f in copied) + "\n\n\n"


def _block(lines: list[str], depth: int) -> str:
    return "\n".join(INDENT * depth + line if line else "" for line in lines)


def generate(graph: Graph, class_name: str | None = None, *, output: str = "logits") -> str:
    """Standalone Python source defining an `nn.Module` class for `graph`.

    `class_name` defaults to the spec name in CamelCase; `output` is "logits" (a trailing
    softmax dropped, as `specc_torch.build` does by default) or "probs" — for a classifier;
    other networks return their output layers as computed (a tuple where there are several)."""
    if class_name is not None and (not class_name.isidentifier() or keyword.iskeyword(class_name)):
        raise ValueError(f"class_name {class_name!r} is not a Python identifier")
    name = class_name or class_name_for(graph.name)
    report = infer(graph)
    modules = make_submodules(graph, report)
    steps = plan(graph, output)
    outputs = output_names(graph, output)
    c, h, w = graph.input_shape
    returns = _returns(graph, output, outputs, report.shapes)
    annotation = "torch.Tensor" if len(outputs) == 1 else f"tuple[{', '.join(['torch.Tensor'] * len(outputs))}]"
    description = f"\n\n{_docstring_text(graph.description.strip())}" if graph.description.strip() else ""
    module_lines = [f"self.{n} = {_module_source(graph, report, n)}" for n in modules]
    init_lines = _init_lines(graph, modules) or ["pass  # no layer with parameters"]
    helpers = _helpers(graph, report, steps)
    if name in {helper.__name__ for helper in helpers}:  # the class would replace the helper
        if class_name is not None:
            raise ValueError(f"class_name {name!r} is taken by a helper the generated file defines")
        name += "Net"
    init_functions = _init_functions(graph, helpers)
    return f'''"""{name}: spec '{_docstring_text(graph.name)}', generated by specc (do not edit; regenerate from the spec).

spec sha256: {spec_hash(graph)}{description}

Standalone: this file imports only torch. Input (B, {c}, {h}, {w}) float; forward returns
{returns}.
Weights trained with specc load as they are:

    model = {name}()
    model.load_state_dict(torch.load("checkpoint.pt", map_location="cpu", weights_only=True)["model"])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
{init_functions}class {name}(nn.Module):
    """{_docstring_text(graph.name)}: {report.total_params:,} parameters."""

    # Every ReLU site calls relu_rule(x) and every leaky ReLU site leaky_rule(x, slope), the
    # conv/linear activations included: override them (in a subclass or on an instance, e.g.
    # with a torch.autograd.Function) to change the rule of all of them at once.
    @staticmethod
    def relu_rule(x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)

    @staticmethod
    def leaky_rule(x: torch.Tensor, slope: float) -> torch.Tensor:
        return F.leaky_relu(x, slope)

    def __init__(self, seed: int | None = 0) -> None:
        super().__init__()
{_block(module_lines, 2)}
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = 0) -> None:
        """The spec's initialisation, in spec order, from a private generator (None: unseeded)."""
        g = torch.Generator()
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
{_block(init_lines, 2)}

    def forward(self, x: torch.Tensor) -> {annotation}:
{_block(_forward_lines(graph, steps, report.shapes, outputs), 2)}
'''
