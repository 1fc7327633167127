"""specc_viz: visualization as a backend pass — guided backpropagation, the deconvnet and
saliency (section 3.4 of "The All Convolutional Net") for models specc builds.

    import specc_torch, specc_viz
    model = specc_torch.build("specs/allcnn_c.yaml")
    maps = specc_viz.explain(model, images, layer="conv6", units=[0, 5, "7,3,3"], method="guided")
    with specc_viz.backward_rules(model, "deconvnet"):   # every ReLU now has the deconvnet rule
        ...

Rendering (`specc_viz.render`) and the dataset search (`specc_viz.search`) load on demand.
"""

from __future__ import annotations

from specc_viz.explain import ENGINES, explain, explain_rows, inference_state
from specc_viz.rules import (
    LEAKY_FUNCTIONS,
    METHODS,
    RELU_FUNCTIONS,
    BackwardRulePass,
    DeconvnetReLU,
    GuidedReLU,
    backward_rules,
    leaky_backward,
    relu_backward,
    rule_functions,
)
from specc_viz.units import Channel, Position, parse_unit

__all__ = [
    "ENGINES",
    "LEAKY_FUNCTIONS",
    "METHODS",
    "RELU_FUNCTIONS",
    "BackwardRulePass",
    "Channel",
    "DeconvnetReLU",
    "GuidedReLU",
    "Position",
    "backward_rules",
    "explain",
    "explain_rows",
    "inference_state",
    "leaky_backward",
    "parse_unit",
    "relu_backward",
    "rule_functions",
]
