"""The PyTorch backend of specc: a spec's Graph becomes a real `torch.nn.Module` (`build`),
or a standalone Python file that imports only torch (`codegen.generate`). Like every
backend it takes a Graph; `specc.build(path)` loads a spec and calls it.

    model = specc_torch.build(specc.load("specs/allcnn_c.yaml"), seed=0)  # logits, he init
    out, acts = model(x, capture={"conv6"})                      # named intermediate outputs
    with model.activation_rules(relu=GuidedReLU.apply): ...       # swap every ReLU's rule
"""

from __future__ import annotations

from specc_torch.module import SpeccModule, build, default_leaky_rule, default_relu_rule
from specc_torch.table import TORCH_OPS

__all__ = ["SpeccModule", "TORCH_OPS", "build", "default_leaky_rule", "default_relu_rule"]
