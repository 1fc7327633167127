"""Graph transforms: pure functions IR -> IR, one small rule per module, one table.

| module | transform |
|---|---|
| `replace_pooling.py` | `replace_pooling=strided|conv|convpool` — the paper's derived models |
| `replace_stride.py` | `replace_stride=maxpool` — the inverse, for deconvnet switches |
| `width.py` | `width_mult=F` (`round_to=N`) — scale hidden channel counts |
| `retarget.py` | `classes=N`, `input=CxHxW` — re-target a spec |
| `fc_to_conv.py` | `fc_to_conv` — flatten + linear head -> 1x1 convs + global average pooling |
| `fold_batch_norm.py` | `fold_batch_norm` — batch_norm folded into the conv/linear before it (inference) |

Each transform declares its options once, as the fields of its dataclass (`base.py`);
`registry.py` derives from them the table (name, flags, choices, help, rationale) the CLI,
the API and the tests read; `pipeline.py` runs transforms in order and checks the graph after
each; `weights.py` carries a trained checkpoint over; `diff.py` renders what changed.
"""

from __future__ import annotations

from specc.transforms.base import Rewrite, Transform
from specc.transforms.fc_to_conv import FcToConv
from specc.transforms.fold_batch_norm import FoldBatchNorm
from specc.transforms.pipeline import TransformResult, build_steps, run, transform
from specc.transforms.registry import OPTIONS, TRANSFORMS, make
from specc.transforms.replace_pooling import ReplacePooling
from specc.transforms.replace_stride import ReplaceStride
from specc.transforms.retarget import SetClasses, SetInput
from specc.transforms.width import WidthMult

__all__ = [
    "OPTIONS",
    "TRANSFORMS",
    "FcToConv",
    "FoldBatchNorm",
    "ReplacePooling",
    "ReplaceStride",
    "Rewrite",
    "SetClasses",
    "SetInput",
    "Transform",
    "TransformResult",
    "WidthMult",
    "build_steps",
    "make",
    "run",
    "transform",
]
