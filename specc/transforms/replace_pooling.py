"""The paper's three pool rewrites ("Derived models" of Springenberg et al., Table 2).

- `strided` (Strided-CNN): remove the pool and give its stride to the convolution feeding it.
- `conv` (ALL-CNN): replace the pool by a convolution with the pool's kernel and stride,
  as many output channels as inputs, padded so the output size is the pool's.
- `convpool` (ConvPool-CNN): insert before the pool a stride-1 convolution with the pool's
  kernel and as many output channels as inputs, the control that separates "more
  parameters" from "learned downsampling".

New layers are named after the pool they replace or serve: `<pool>_conv` (`pool1_conv`).
New convolutions take the spec's `defaults.conv` (activation, init, bias), so that they
match the hand-written models, whose every conv layer reads the same defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from specc.errors import UserError
from specc.ir import INPUT, Graph, Node
from specc.ops import AvgPool, Conv, MaxPool
from specc.ops_pooling import LPPool, uniform_window
from specc.shapes import ShapeReport
from specc.transforms.base import (
    Rewrite,
    Transform,
    argument,
    finish,
    located,
    nothing_to_do,
    option,
    skip_unsupported_option,
)
from specc.transforms.rewrite import NodeList, dims, new_node, out_with_padding, output_or_none, padding_for

Mode = Literal["strided", "conv", "convpool"]
FIXED_POOLS = (MaxPool, AvgPool, LPPool)  # the pools with a kernel and a stride, which the rules rewrite
POOL_TYPES = tuple(cls.kind for cls in FIXED_POOLS)
POOL_ALIASES = {"max": "max_pool", "avg": "avg_pool", "lp": "lp_pool"} | {t: t for t in POOL_TYPES}


def parse_pool_types(text) -> tuple[str, ...]:
    """`max,avg` -> ('max_pool', 'avg_pool')."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        key = str(item).strip()
        if key not in POOL_ALIASES:
            raise UserError(
                f"--pool-types {text}: unknown pool type '{key}' — expected max, avg, lp or a list (max,avg)"
            )
        out.append(POOL_ALIASES[key])
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class ReplacePooling(Transform):
    """Replace each pooling layer by the paper's `strided`, `conv` or `convpool` rule."""

    name: ClassVar[str] = "replace_pooling"
    help: ClassVar[str] = "replace each max-pool: strided (Strided-CNN), conv (ALL-CNN) or convpool (ConvPool-CNN)"
    rationale: ClassVar[str] = (
        "The paper's central experiment: is max-pooling needed, or can a network learn its "
        "downsampling? strided removes the pool and strides the conv before it (same "
        "parameters); conv replaces the pool by a learned 3x3/2 convolution; convpool keeps the "
        "pool but adds the same convolution before it, the control for the extra parameters."
    )
    mode: Mode = argument(metavar="RULE")
    pool_types: tuple[str, ...] = option(
        ("max_pool",),
        metavar="max,avg",
        parse=parse_pool_types,
        help="pool types --replace-pooling rewrites (default max; avg pools are refused unless listed)",
    )
    skip_unsupported: bool = skip_unsupported_option()

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "pool_types", parse_pool_types(self.pool_types))

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        pools = [n for n in graph.nodes if n.op.pooling]
        if not pools:
            return nothing_to_do(graph, "no max_pool or avg_pool layer — nothing to replace")
        work = NodeList(graph)
        shapes = dict(report.shapes)
        refusals = []
        rule = {"strided": self._strided, "conv": self._conv, "convpool": self._convpool}[self.mode]
        for pool in pools:
            if pool.type not in POOL_TYPES:
                refusals.append(located(pool, _no_fixed_window(pool, shapes[pool.inputs[0]])))
                continue
            if pool.type not in self.pool_types:
                allowed = ",".join(t.removesuffix("_pool") for t in self.pool_types)
                article = "a" if pool.type == "max_pool" else "an"
                hint = (
                    f"add lp to --pool-types ({allowed},lp) to replace it"
                    if pool.type == "lp_pool"
                    else "use --pool-types max,avg to replace both kinds"
                )
                refusals.append(
                    located(pool, f"{pool.name} is {article} {pool.type}, and --pool-types is {allowed} — {hint}")
                )
                continue
            why = rule(work, work.node(pool.name), shapes)
            if why:
                refusals.append(located(pool, f"cannot rewrite {pool.name}: {why}"))
        return finish(work.graph(), refusals, self.skip_unsupported)

    # -- the three rules; each edits `work` and returns None, or returns why it cannot ---
    def _strided(self, work: NodeList, pool: Node, shapes) -> str | None:
        conv, why = _feeding_conv(work, pool)
        if conv is None:
            return why
        assert isinstance(conv.op, Conv), "_feeding_conv returns a conv layer"
        pool_op = _pool_op(pool)
        # The strides compose (a stride-2 stem conv before a stride-2 pool becomes stride 4),
        # as long as the windows still cover the input: a stride beyond the conv's (dilated)
        # extent would skip rows and columns the pool saw.
        before = conv.op.stride_hw()
        stride = (before[0] * pool_op.stride_hw()[0], before[1] * pool_op.stride_hw()[1])
        extent = tuple(d * (k - 1) + 1 for d, k in zip(conv.op.dilation_hw(), conv.op.kernel_hw()))
        if before != (1, 1) and (stride[0] > extent[0] or stride[1] > extent[1]):
            return (
                f"its input {conv.name} already has stride {_stride(before)}, and stride {_stride(stride)}"
                f" would exceed its {dims(extent)} window (input rows and columns skipped)"
            )
        strided = conv.with_params(stride=stride)
        got = output_or_none(strided.op, shapes[conv.inputs[0]])
        want = shapes[pool.name]
        if got is None or got[1:] != want[1:]:
            size = dims(got[1:]) if got else "no valid output"
            return (
                f"{conv.name} with stride {_stride(stride)} would give {size}, but {pool.name} gives {dims(want[1:])}"
            )
        work.put(strided)
        work.remove(pool.name)
        return None

    def _conv(self, work: NodeList, pool: Node, shapes) -> str | None:
        src = pool.inputs[0]
        channels = shapes[src][0]
        pool_op = _pool_op(pool)
        conv = new_node(
            work.base,
            work.fresh_name(f"{pool.name}_conv"),
            "conv",
            pool,
            pool.inputs,
            filters=channels,
            kernel=pool_op.kernel,
            stride=pool_op.stride_hw(),
            padding="valid",
            dilation=1,
            groups=1,
        )
        padding = padding_for(
            pool_op.kernel_hw(),
            lambda p: out_with_padding(conv.op, shapes[src], p),
            shapes[pool.name],
            preferred=(pool_op.padding,),
        )
        if padding is None:
            return f"no padding of a {conv.op.describe().split()[0]} convolution gives {pool.name}'s output size"
        conv = conv.with_params(padding=padding)
        work.swap(pool.name, conv)
        shapes[conv.name] = shapes[pool.name]
        return None

    def _convpool(self, work: NodeList, pool: Node, shapes) -> str | None:
        src = pool.inputs[0]
        channels = shapes[src][0]
        pool_op = _pool_op(pool)
        conv = new_node(
            work.base,
            work.fresh_name(f"{pool.name}_conv"),
            "conv",
            pool,
            pool.inputs,
            filters=channels,
            kernel=pool_op.kernel,
            stride=1,
            padding="valid",
            dilation=1,
            groups=1,
        )

        def pooled(padding):
            out = out_with_padding(conv.op, shapes[src], padding)
            return output_or_none(pool.op, out) if out else None

        # 'same' first: the inserted conv should keep the size the pool saw.
        padding = padding_for(pool_op.kernel_hw(), pooled, shapes[pool.name], preferred=("same",))
        if padding is None:
            return f"no padding of a stride-1 {dims(pool_op.kernel_hw())} convolution keeps {pool.name}'s output size"
        conv = conv.with_params(padding=padding)
        work.insert_before(pool.name, conv)
        work.put(pool.replace(inputs=(conv.name,)))
        shapes[conv.name] = out_with_padding(conv.op, shapes[src], padding)
        return None


def _pool_op(pool: Node) -> MaxPool | AvgPool | LPPool:
    """The op of a pool the rules rewrite (`apply` passes only the types in POOL_TYPES)."""
    assert isinstance(pool.op, FIXED_POOLS), f"{pool.name} is a {pool.type}, not a pool with a fixed window"
    return pool.op


def _feeding_conv(work: NodeList, pool: Node) -> tuple[Node | None, str | None]:
    """The convolution whose stride the pool can take: the pool's input, or the conv behind a
    chain of per-position layers (relu, batch_norm), each read by nothing else."""
    name, reader = pool.inputs[0], pool
    while True:
        if name == INPUT:
            return None, "its input is the network input, not a conv"
        node = work.node(name)
        others = [n.name for n in work.consumers(name) if n.name != reader.name]
        if others:
            return None, (
                f"its input {name} also feeds {', '.join(others)}, which would see the stride too"
                if node.type == "conv"
                else f"{name} also feeds {', '.join(others)}"
            )
        if node.op.pointwise:
            name, reader = node.inputs[0], node
            continue
        if node.type != "conv":
            return None, f"its input {name} is a {node.type}, not a conv"
        return node, None


def _no_fixed_window(pool: Node, in_shape: tuple[int, ...]) -> str:
    """Why the rules cannot rewrite an adaptive pool, and what to write instead."""
    why = f"cannot rewrite {pool.name}: an {pool.type}'s windows follow its input size, not a fixed kernel and stride"
    _, h, w = in_shape
    oh, ow = pool.op.output_hw()  # type: ignore[attr-defined]
    if (h, w) == (oh, ow):
        return f"{why} — on its {dims((h, w))} input it is the identity: remove it"
    rows, cols = uniform_window(h, oh), uniform_window(w, ow)
    if rows is None or cols is None:
        return f"{why}, and from {dims((h, w))} to {dims((oh, ow))} its windows are uneven"
    plain = pool.type.removeprefix("adaptive_")
    kernel, stride = _stride((rows[0], cols[0])), _stride((rows[1], cols[1]))
    plain_pool = f"{'an' if plain == 'avg_pool' else 'a'} {plain} with kernel {kernel}, stride {stride}"
    return f"{why} — on its {dims((h, w))} input it is {plain_pool}: write that to rewrite it"


def _stride(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else dims(pair)
