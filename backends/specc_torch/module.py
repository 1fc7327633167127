"""`SpeccModule`: a spec's graph as a real `torch.nn.Module`, and `build`, its front door.

Every layer that has parameters, running statistics or a training-only behaviour (conv,
linear, batch_norm, dropout, pools) is a submodule named exactly as the layer, so the
state_dict keys are `conv1.weight`, `bn1.running_mean`, ... The forward pass walks the graph's
topological order, reads `add`/`concat` operands in each node's own `inputs` order and drops
every intermediate tensor after its last reader.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import networkx as nx
import torch
from torch import nn

from specc.errors import Diagnostic, SpecError, did_you_mean
from specc.ir import INPUT, Graph
from specc.lowering import lower
from specc.ops import LayerOp
from specc.shapes import ShapeReport, infer
from specc_torch import init
from specc_torch.table import TORCH_OPS, default_leaky_rule, default_relu_rule

OUTPUTS = ("logits", "probs")


@dataclass(frozen=True)
class Step:
    """One step of the forward pass (a lowered step, see `specc.lowering`); `free` are the
    values no later step reads."""

    name: str
    layer: str
    op: LayerOp
    inputs: tuple[str, ...]
    fused: bool
    free: tuple[str, ...]

    @property
    def kind(self) -> str:
        return self.op.kind


def output_name(graph: Graph, output: str) -> str:
    """The value the network returns: the last layer, or its input when it is a softmax and
    logits are asked for (what training with CrossEntropyLoss needs)."""
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} — expected one of {', '.join(OUTPUTS)}")
    last = graph.output
    return last.inputs[0] if output == "logits" and last.op.makes_probabilities else last.name


def plan(graph: Graph, output: str) -> list[Step]:
    """The layers the output depends on, in topological order, each with the values to free
    after it. Layers that feed nothing are not run (`specc check` warns about them)."""
    target = output_name(graph, output)
    live = nx.ancestors(graph.nx, target) | {target}
    lowered = lower(n for n in graph.topo_order() if n.name in live)
    last_use = {src: i for i, step in enumerate(lowered) for src in step.inputs}
    steps = []
    for i, step in enumerate(lowered):
        free = tuple(sorted({s for s in step.inputs if last_use[s] == i and s != target}))
        steps.append(Step(step.name, step.layer, step.op, step.inputs, step.fused, free))
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
    return set(vars(nn.Module())) | {"graph", "report", "shapes", "layer_names", "output", "output_name", "steps"}


class SpeccModule(nn.Module):
    """A spec compiled to PyTorch. Build one with `specc_torch.build(spec)`.

    Attributes: `graph` (the IR), `report` (its ShapeReport), `shapes` (layer name -> per-sample
    output shape), `layer_names` (all layers in spec order), `output` ("logits" or "probs"),
    `output_name` (the layer whose value `forward` returns).

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
        self.output_name = output_name(graph, output)
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
        """`forward(x)` -> the output, (B, classes). With `capture` (layer names) or `stop_at`
        (a layer name) -> `(out, captured)`: `out` is the stop_at layer's output (else the
        network's), `captured` maps each captured name to its output, still on the autograd
        graph, so a backward pass can start from it."""
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
            out = TORCH_OPS[step.kind].run(self, step, [values[s] for s in step.inputs])
            for dead in step.free:
                del values[dead]
            values[step.name] = out
            if step.name in capture:
                captured[step.name] = out
            if step.name == stop_at:
                return out, captured
        out = values[self.output_name]
        return (out, captured) if capture or stop_at else (out, None)

    def _check_names(self, names: set[str], stop_at: str | None) -> None:
        order = [s.name for s in self.steps]
        for name in sorted(names):
            if name in order:
                if stop_at and order.index(name) > order.index(stop_at):
                    raise ValueError(f"layer '{name}' comes after stop_at='{stop_at}' — it is never computed")
                continue
            if name not in self.layer_names:
                raise ValueError(f"no layer '{name}' in spec '{self.graph.name}'{did_you_mean(name, self.layer_names)}")
            if self.graph.output.name == name:
                raise ValueError(f"layer '{name}' is not run with output='logits' — build with output='probs'")
            raise ValueError(f"layer '{name}' does not feed the network output, so it is never computed")

    def extra_repr(self) -> str:
        return f"spec={self.graph.name!r}, output={self.output!r}"


def build(graph: Graph, *, seed: int | None = 0, output: str = "logits") -> SpeccModule:
    """A Graph -> an initialised `SpeccModule` on the CPU. (`specc.build` is the front door
    that also takes a spec path or YAML text, and `--set` overrides.)

    `seed`: the weights' seed (None: nondeterministic); the global RNG is never touched.
    `output`: "logits" drops a trailing softmax (for CrossEntropyLoss), "probs" keeps it."""
    if not isinstance(graph, Graph):
        raise TypeError(
            f"specc_torch.build takes a Graph, not {type(graph).__name__}: use specc.build(spec) for a"
            " spec path or YAML text, or specc.load(spec) first"
        )
    return SpeccModule(graph, infer(graph), seed=seed, output=output)
