"""The inverse rewrite: a stride-s convolution becomes the same convolution with stride 1,
followed by a 3x3 max-pool of stride s.

The paper does this to a trained ALL-CNN to compare guided backpropagation with the
deconvnet, which needs the switches of max-pooling layers. The convolution keeps its name,
its weights' shapes and its padding, so a trained checkpoint carries over unchanged; the
new pool is named `<conv>_pool` and padded so that its output size is the strided conv's.
The networks are not equivalent (a max over a 3x3 window is not subsampling), which is the
point: the pooled network has switches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from specc.errors import UserError
from specc.ir import Graph
from specc.ops import AvgPool, Conv, MaxPool
from specc.shapes import ShapeReport
from specc.transforms.base import Rewrite, Transform, argument, finish, located, nothing_to_do, skip_unsupported_option
from specc.transforms.rewrite import NodeList, dims, new_node, out_with_padding, output_or_none, padding_for

Target = Literal["maxpool", "avgpool"]  # the values of the flag
TARGETS: dict[Target, str] = {"maxpool": MaxPool.kind, "avgpool": AvgPool.kind}  # flag value -> the pool's type


@dataclass(frozen=True)
class ReplaceStride(Transform):
    """Turn each strided convolution into a stride-1 convolution and a pooling layer."""

    name: ClassVar[str] = "replace_stride"
    help: ClassVar[str] = "turn each stride-s conv into a stride-1 conv + a 3x3 max-pool of stride s (same weights)"
    rationale: ClassVar[str] = (
        "The inverse of replace_pooling=conv. The paper applies it to a trained ALL-CNN to get "
        "max-pooling switches for the deconvnet; the convolutions keep their names and shapes, "
        "so --weights carries a checkpoint over unchanged."
    )
    target: Target = argument("maxpool", metavar="POOL")
    pool_kernel: int = 3  # constructor only: the paper's 3x3
    skip_unsupported: bool = skip_unsupported_option()

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.pool_kernel, int) or self.pool_kernel < 1:
            raise UserError(f"replace-stride pool kernel {self.pool_kernel!r}: expected a positive integer")

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        strided = [n for n in graph.nodes if isinstance(n.op, Conv) and n.op.stride_hw() != (1, 1)]
        if not strided:
            return nothing_to_do(graph, "no strided convolution — nothing to replace")
        work = NodeList(graph)
        refusals = []
        k = self.pool_kernel
        for conv in strided:
            assert isinstance(conv.op, Conv)  # as `strided` holds: narrows the op's type
            stride = conv.op.stride_hw()
            unstrided = conv.with_params(stride=1)
            full = output_or_none(unstrided.op, report.shapes[conv.inputs[0]])
            pool = new_node(
                graph,
                work.fresh_name(f"{conv.name}_pool"),
                TARGETS[self.target],
                conv,
                (conv.name,),
                kernel=k,
                stride=stride,
                padding="valid",
            )
            want = report.shapes[conv.name]
            padding = padding_for(
                (k, k),
                lambda p, pool=pool, full=full: out_with_padding(pool.op, full, p),
                want,
                preferred=(conv.op.padding,),
                max_pad=(k // 2, k // 2),
            )
            if padding is None:
                refusals.append(
                    located(
                        conv,
                        f"cannot rewrite {conv.name}: with stride 1 it gives"
                        f" {dims(full[1:]) if full else 'no output'}, and no padding of a {k}x{k}/{dims(stride)}"
                        f" pool turns that into its {dims(want[1:])} output",
                    )
                )
                continue
            work.put(unstrided)
            work.insert_after(conv.name, pool.with_params(padding=padding))
        return finish(work.graph(), refusals, self.skip_unsupported)
