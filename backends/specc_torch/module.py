"""`SpeccModule`: a spec's graph as a real `torch.nn.Module`, and `build`, its front door.

Every layer that has parameters, running statistics or a training-only behaviour (conv,
linear, batch_norm, dropout, pools) is a submodule named exactly as the layer, so the
state_dict keys are `conv1.weight`, `bn1.running_mean`, ... The forward pass walks the graph's
topological order, reads `add`/`concat` operands in each node's own `inputs` order and drops
every intermediate tensor after its last reader.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
from torch import nn

from specc.errors import Diagnostic, SpecError, did_you_mean
from specc.ir import INPUT, Graph
from specc.lowering import Step as LoweredStep
from specc.lowering import lower
from specc.outputs import output_mode_problem
from specc.shapes import ShapeReport, infer
from specc_torch import init
from specc_torch.table import TORCH_OPS, default_leaky_rule, default_relu_rule

OUTPUTS = ("logits", "probs")


@dataclass(frozen=True)
class Step(LoweredStep):
    """One step of the forward pass: a lowered step (see `specc.lowering`), so the op table's
    entries take it, and `free`, the values no later step reads."""

    free: tuple[str, ...] = ()
    # May overwrite its first input: nothing later reads it, it is not the network input or an
    # output, and the step that made it has `fresh_output` (its backward does not need it).
    inplace: bool = False


def output_names(graph: Graph, output: str) -> tuple[str, ...]:
    """The values the network returns, in order. A classifier returns its one output, or the
    softmax's input when it ends in a softmax and logits are asked for (what training with
    CrossEntropyLoss needs); any other network returns its output layers as computed (see
    `specc.outputs.output_mode_problem`: it refuses `probs`)."""
    problem = output_mode_problem(graph, output)
    if problem:
        raise ValueError(problem)
    if not graph.is_classifier:
        return graph.output_names
    last = graph.output
    return (last.inputs[0] if output == "logits" and last.op.makes_probabilities else last.name,)


def output_name(graph: Graph, output: str) -> str:
    """The value the network returns (the last one, where it returns several)."""
    return output_names(graph, output)[-1]


def plan(graph: Graph, output: str) -> list[Step]:
    """The layers the outputs depend on, in topological order, each with the values to free
    after it. Layers that feed no output are not run (`specc check` warns about them)."""
    targets = set(output_names(graph, output))
    live = set(targets).union(*(nx.ancestors(graph.nx, t) for t in targets))
    lowered = lower(n for n in graph.topo_order() if n.name in live)
    last_use = {src: i for i, step in enumerate(lowered) for src in step.inputs}
    fresh = {step.name for step in lowered if TORCH_OPS[step.kind].fresh_output}
    steps = []
    for i, step in enumerate(lowered):
        free = tuple(sorted({s for s in step.inputs if last_use[s] == i and s not in targets}))
        first = step.inputs[0] if step.inputs else INPUT
        inplace = first in free and first in fresh and step.inputs.count(first) == 1
        steps.append(Step(step.name, step.layer, step.op, step.inputs, free, inplace))
    return steps


def make_submodules(graph: Graph, report: ShapeReport) -> dict[str, nn.Module]:
    """One submodule per layer that needs one, in spec order; parameters left uninitialised."""
    problems, modules = [], {}
    for node in graph.nodes:
        spec = TORCH_OPS[node.type].module(node.op, [report.shapes[s] for s in node.inputs])
        if spec is None:
            continue
        if keyword.iskeyword(node.name) or hasattr(SpeccModule, node.name) or node.name in _reserved_names():
            problems.append(
                Diagnostic(
                    node.pos_of("name"),
                    node.path,
                    f"layer name '{node.name}' clashes with a PyTorch module attribute or Python keyword"
                    " — rename the layer (the PyTorch backend makes each layer an attribute)",
                    node.name,
                )
            )
            continue
        with torch.device("meta"):  # no memory and no draw from the global RNG
            modules[node.name] = spec.make()
    if problems:
        raise SpecError(problems)
    return modules


def _reserved_names() -> set[str]:
    """Instance attributes a layer must not shadow: nn.Module's own (`training`, ...) and ours."""
    return set(vars(nn.Module())) | {
        "graph",
        "report",
        "shapes",
        "layer_names",
        "output",
        "output_name",
        "output_names",
        "steps",
    }


class SpeccModule(nn.Module):
    """A spec compiled to PyTorch. Build one with `specc_torch.build(spec)`.

    Attributes: `graph` (the IR), `report` (its ShapeReport), `shapes` (layer name -> per-sample
    output shape), `layer_names` (all layers in spec order), `output` ("logits" or "probs"),
    `output_names` (the layers whose values `forward` returns, in order), `output_name` (the
    last of them: the class scores of a classifier).

    Activation seam: every ReLU site calls `self.relu_rule(x)` and every leaky ReLU site
    `self.leaky_rule(x, slope)` — the conv/linear fused activations and the standalone layers
    alike. `set_activation_rules` or the `activation_rules` context manager swap them, e.g. for
    a custom `torch.autograd.Function` with another backward rule.
    """

    relu_rule: Callable[[torch.Tensor], torch.Tensor] = staticmethod(default_relu_rule)
    leaky_rule: Callable[[torch.Tensor, float], torch.Tensor] = staticmethod(default_leaky_rule)

    def __init__(self, graph: Graph, report: ShapeReport | None = None, *, seed: int | None = 0, output="logits"):
        super().__init__()
        report = report if report is not None else infer(graph)
        self.graph = graph
        self.report = report
        self.shapes = {n.name: report.shapes[n.name] for n in graph.nodes}
        self.layer_names = tuple(n.name for n in graph.nodes)
        self.output = output
        self.output_names = output_names(graph, output)
        self.output_name = self.output_names[-1]
        self.steps = tuple(plan(graph, output))
        for name, module in make_submodules(graph, report).items():
            self.add_module(name, module)
        self.to_empty(device="cpu")
        self.reset_parameters(seed)

    # -- initialisation -------------------------------------------------------------------
    def reset_parameters(self, seed: int | None = 0) -> None:
        """Initialise every layer as its `init` field says (see `specc_torch.init`), in spec
        order from a private generator: the same seed gives the same bits on every machine."""
        generator = init.make_generator(seed)
        for node in self.graph.nodes:
            module = self._modules.get(node.name)
            rule = node.op.init_rule()
            if module is not None and rule is not None:
                init.apply_rule(module, rule, generator)

    # -- the activation seam --------------------------------------------------------------
    def set_activation_rules(
        self,
        relu: Callable[[torch.Tensor], torch.Tensor] | None = None,
        leaky_relu: Callable[[torch.Tensor, float], torch.Tensor] | None = None,
    ) -> None:
        """Swap the function every ReLU (`relu(x)`) or leaky ReLU (`leaky_relu(x, slope)`)
        site calls; None keeps the current one. `reset_activation_rules` restores the defaults."""
        if relu is not None:
            self.relu_rule = relu
        if leaky_relu is not None:
            self.leaky_rule = leaky_relu

    def reset_activation_rules(self) -> None:
        """Back to `F.relu` / `F.leaky_relu`."""
        self.__dict__.pop("relu_rule", None)
        self.__dict__.pop("leaky_rule", None)

    @contextmanager
    def activation_rules(self, relu=None, leaky_relu=None) -> Iterator[SpeccModule]:
        """`with model.activation_rules(relu=GuidedReLU.apply): ...` — restored on exit, also on error."""
        saved = {k: self.__dict__[k] for k in ("relu_rule", "leaky_rule") if k in self.__dict__}
        self.set_activation_rules(relu, leaky_relu)
        try:
            yield self
        finally:
            self.reset_activation_rules()
            self.__dict__.update(saved)

    # -- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *, capture: Iterable[str] | None = None, stop_at: str | None = None):
        """`forward(x)` -> the output: (B, classes) for a classifier, else the output layer's
        value; a tuple of the values in `outputs:` order where the spec lists several. With
        `capture` (layer names) or `stop_at` (a layer name) -> `(out, captured)`: `out` is the
        stop_at layer's output (else the network's), `captured` maps each captured name to its
        output, still on the autograd graph, so a backward pass can start from it."""
        if capture is None and stop_at is None:
            return self._run(x, frozenset(), None)[0]
        wanted = frozenset([capture] if isinstance(capture, str) else capture or ())
        self._check_names(wanted | ({stop_at} if stop_at else set()), stop_at)
        return self._run(x, wanted, stop_at)

    def forward_with_activations(self, x: torch.Tensor, names: Iterable[str]):
        """`(output, {name: that layer's output})` in one pass."""
        return self.forward(x, capture=names)

    def layer_output(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """The output of layer `name`; the layers after it are not run."""
        return self.forward(x, stop_at=name)[0]

    def _run(self, x: torch.Tensor, capture: frozenset[str], stop_at: str | None):
        values = {INPUT: x}
        captured: dict[str, torch.Tensor] = {}
        for step in self.steps:
            if step.inplace and step.inputs[0] in capture:  # a captured value must keep its value
                step = dataclasses.replace(step, inplace=False)
            out = TORCH_OPS[step.kind].run(self, step, [values[s] for s in step.inputs])
            for dead in step.free:
                del values[dead]
            values[step.name] = out
            if step.name in capture:
                captured[step.name] = out
            if step.name == stop_at:
                return out, captured
        out: Any = values[self.output_name]  # a tensor, or a tuple of them for several outputs
        if len(self.output_names) > 1:
            out = tuple(values[name] for name in self.output_names)
        return (out, captured) if capture or stop_at else (out, None)

    def _check_names(self, names: frozenset[str], stop_at: str | None) -> None:
        order = [s.name for s in self.steps]
        for name in sorted(names):
            if name in order:
                if stop_at and order.index(name) > order.index(stop_at):
                    raise ValueError(f"layer '{name}' comes after stop_at='{stop_at}' — it is never computed")
                continue
            if name not in self.layer_names:
                raise ValueError(f"no layer '{name}' in spec '{self.graph.name}'{did_you_mean(name, self.layer_names)}")
            if name in self.graph.output_names:
                raise ValueError(f"layer '{name}' is not run with output='logits' — build with output='probs'")
            which = "the network output" if len(self.output_names) == 1 else "any of the network's outputs"
            raise ValueError(f"layer '{name}' does not feed {which}, so it is never computed")

    def extra_repr(self) -> str:
        return f"spec={self.graph.name!r}, output={self.output!r}"


def build(graph: Graph, *, seed: int | None = 0, output: str = "logits") -> SpeccModule:
    """A Graph -> an initialised `SpeccModule` on the CPU. (`specc.build` is the front door
    that also takes a spec path or YAML text, and `--set` overrides.)

    `seed`: the weights' seed (None: nondeterministic); the global RNG is never touched.
    `output`: "logits" drops a trailing softmax (for CrossEntropyLoss), "probs" keeps it —
    for a classifier; a network without classes or with several outputs returns its output
    layers as computed and takes the default only."""
    if not isinstance(graph, Graph):
        raise TypeError(
            f"specc_torch.build takes a Graph, not {type(graph).__name__}: use specc.build(spec) for a"
            " spec path or YAML text, or specc.load(spec) first"
        )
    return SpeccModule(graph, infer(graph), seed=seed, output=output)
