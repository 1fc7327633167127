"""Parameter counts, MACs and receptive fields with oracles of their own (issue #10).

Expected values are written out by hand from the definitions and checked against torch.nn:
parameters are `sum(p.numel())` of the nn module with the same settings, MACs are
`Cout * Ho * Wo * (Cin / groups) * kh * kw` for a convolution and `in * out` for a linear
layer, and receptive fields are `rf_l = rf_{l-1} + (k_l - 1) * jump_{l-1}`,
`jump_l = jump_{l-1} * s_l`, confirmed by the extent of a real gradient through torch
modules with positive weights.
"""

from __future__ import annotations

import json

import pytest
import torch
from oracle_helpers import spec_text as oracle_spec_text
from torch import nn

import specc_torch
from specc.api import load
from specc.cli import main
from specc.shapes import infer
from specc.summary import render
from specc_viz.receptive import receptive_box


def spec_text(layer: str, c: int, h: int, w: int) -> str:
    return oracle_spec_text(layer, c, h, w, "counts")


def torch_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- convolutions --------------------------------------------------------------------------
# (layer, input (C, H, W), the torch module, hand-computed params, hand-computed MACs)
CONV_ROWS = [
    pytest.param(
        "type: conv, filters: 8, kernel: 3, padding: same, groups: 2",
        (8, 8, 8),
        lambda: nn.Conv2d(8, 8, 3, padding=1, groups=2),
        8 * (8 // 2) * 3 * 3 + 8,  # 288 + 8 = 296
        8 * 8 * 8 * (8 // 2) * 3 * 3,  # Cout*Ho*Wo*(Cin/g)*kh*kw = 18,432
        id="groups2",
    ),
    pytest.param(
        "type: conv, filters: 12, kernel: 3, groups: 4",
        (8, 6, 6),
        lambda: nn.Conv2d(8, 12, 3, groups=4),
        12 * (8 // 4) * 9 + 12,  # 216 + 12 = 228
        12 * 4 * 4 * (8 // 4) * 9,  # output 4x4: 3,456
        id="groups4",
    ),
    pytest.param(
        "type: conv, filters: 6, kernel: 3, stride: 2, padding: 1, groups: 6",
        (6, 7, 7),
        lambda: nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6),
        6 * 1 * 9 + 6,  # depthwise: 54 + 6 = 60
        6 * 4 * 4 * 1 * 9,  # output (7 + 2 - 3)//2 + 1 = 4: 864
        id="depthwise",
    ),
    pytest.param(
        "type: conv, filters: 12, kernel: [3, 5], padding: same, groups: 6",
        (6, 5, 5),
        lambda: nn.Conv2d(6, 12, (3, 5), padding=(1, 2), groups=6),
        12 * 1 * 3 * 5 + 12,  # depth multiplier 2: 180 + 12 = 192
        12 * 5 * 5 * 1 * 15,  # 4,500
        id="depthwise-multiplier-non-square",
    ),
    pytest.param(
        "type: conv, filters: 5, kernel: [2, 3], bias: false",
        (3, 4, 6),
        lambda: nn.Conv2d(3, 5, (2, 3), bias=False),
        5 * 3 * 2 * 3,  # no bias: 90
        5 * 3 * 4 * 3 * 6,  # output 3x4: 1,080
        id="no-bias",
    ),
    pytest.param(
        "type: conv, filters: 6, kernel: 1, groups: 2, bias: false",
        (4, 3, 3),
        lambda: nn.Conv2d(4, 6, 1, groups=2, bias=False),
        6 * 2 * 1 * 1,  # 12
        6 * 3 * 3 * 2 * 1,  # 108
        id="grouped-no-bias",
    ),
    pytest.param(
        "type: conv, filters: 4, kernel: 3, dilation: 2",
        (8, 7, 7),
        lambda: nn.Conv2d(8, 4, 3, dilation=2),
        4 * 8 * 9 + 4,  # dilation adds no weights: 292
        4 * 3 * 3 * 8 * 9,  # output (7 - 5) + 1 = 3: 2,592 (nor MACs per output)
        id="dilated",
    ),
]


@pytest.mark.parametrize(("layer", "in_shape", "make", "params", "macs"), CONV_ROWS)
def test_conv_params_and_macs(layer, in_shape, make, params, macs):
    reference = make()
    assert torch_params(reference) == params
    out = reference(torch.zeros(1, *in_shape))  # (1, Cout, Ho, Wo)
    cout, ho, wo = out.shape[1:]
    kh, kw = reference.kernel_size
    assert cout * ho * wo * (reference.in_channels // reference.groups) * kh * kw == macs
    info = infer(load(spec_text(layer, *in_shape))).info("x")
    assert (info.params, info.macs) == (params, macs)


# -- linear --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bias", "params"),
    [(True, 12 * 5 + 5), (False, 12 * 5)],  # weight 5x12 (+ bias 5): 65 / 60
)
def test_linear_params_and_macs(bias, params):
    # 3x2x2 flattened = 12 features -> 5 units
    text = f"""\
name: fc
input: {{channels: 3, size: 2}}
classes: 5
layers:
  - {{type: flatten}}
  - {{name: x, type: linear, units: 5, bias: {str(bias).lower()}}}
"""
    assert torch_params(nn.Linear(12, 5, bias=bias)) == params
    info = infer(load(text)).info("x")
    assert info.params == params
    assert info.macs == 12 * 5  # in * out = 60, bias or not


# -- batch_norm ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("affine", "make", "params"),
    [
        (True, lambda: nn.BatchNorm2d(6), 2 * 6),  # gamma and beta per channel: 12
        (False, lambda: nn.BatchNorm2d(6, affine=False), 0),  # running stats are buffers, not parameters
    ],
)
def test_batch_norm_params_on_feature_maps(affine, make, params):
    assert torch_params(make()) == params
    info = infer(load(spec_text(f"type: batch_norm, affine: {str(affine).lower()}", 6, 3, 3))).info("x")
    assert info.params == params


@pytest.mark.parametrize(
    ("affine", "make", "params"),
    [
        (True, lambda: nn.BatchNorm1d(20), 2 * 20),  # 2x2x5 flattened = 20 features: 40
        (False, lambda: nn.BatchNorm1d(20, affine=False), 0),
    ],
)
def test_batch_norm_params_on_flat_vectors(affine, make, params):
    text = f"""\
name: bnflat
input: {{channels: 5, size: 2}}
classes: 2
layers:
  - {{type: flatten}}
  - {{name: x, type: batch_norm, affine: {str(affine).lower()}}}
  - {{type: linear, units: 2}}
"""
    assert torch_params(make()) == params
    assert infer(load(text)).info("x").params == params


# -- a whole network against a hand-built nn.Sequential ------------------------------------
GROUPED_NET = """\
name: grouped
input: {channels: 4, size: 8}
classes: 3
layers:
  - {type: conv, filters: 8, kernel: 3, padding: same, groups: 2, bias: false}
  - {type: batch_norm}
  - {type: relu}
  - {type: conv, filters: 8, kernel: 3, stride: 2, padding: 1, groups: 8}
  - {type: batch_norm, affine: false}
  - {type: conv, filters: 16, kernel: 1, groups: 4}
  - {type: flatten}
  - {type: linear, units: 3}
"""


def test_whole_network_matches_a_hand_built_sequential():
    reference = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False),  # 8*2*9 = 144
        nn.BatchNorm2d(8),  # 16
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # 8*1*9 + 8 = 80; 8x8 -> 4x4
        nn.BatchNorm2d(8, affine=False),  # 0
        nn.Conv2d(8, 16, 1, groups=4),  # 16*2 + 16 = 48
        nn.Flatten(),  # 16*4*4 = 256
        nn.Linear(256, 3),  # 768 + 3 = 771
    )
    hand = 144 + 16 + 80 + 0 + 48 + 771  # 1,059
    assert torch_params(reference) == hand
    # MACs: 8*8*8*2*9 + 8*4*4*1*9 + 16*4*4*2*1 + 256*3 = 9216 + 1152 + 512 + 768 = 11,648
    hand_macs = 8 * 8 * 8 * 2 * 9 + 8 * 4 * 4 * 1 * 9 + 16 * 4 * 4 * 2 + 256 * 3
    report = infer(load(GROUPED_NET))
    assert report.total_params == hand == 1059
    assert report.total_macs == hand_macs == 11648
    model = specc_torch.build(load(GROUPED_NET), seed=0)
    assert torch_params(model) == hand
    assert tuple(model(torch.zeros(1, 4, 8, 8)).shape) == (1, 3)


# -- receptive field and jump --------------------------------------------------------------
RF_NET = """\
name: rf
input: {channels: 1, size: 40}
classes: 2
layers:
  - {name: c1, type: conv, filters: 2, kernel: [3, 5], stride: [1, 2]}
  - {name: p2, type: avg_pool, kernel: [2, 2], stride: 2}
  - {name: c3, type: conv, filters: 2, kernel: 3, dilation: 2}
  - {name: c4, type: conv, filters: 2, kernel: [1, 3], stride: [2, 1]}
  - {type: flatten}
  - {type: linear, units: 2}
"""
# By hand (rows, columns), starting from rf = 1, jump = 1:
#   c1 k [3,5] s [1,2]:    rf = (1 + 2*1, 1 + 4*1) = (3, 5)        jump = (1, 2)
#   p2 k [2,2] s 2:        rf = (3 + 1*1, 5 + 1*2) = (4, 7)        jump = (2, 4)
#   c3 k 3 d 2 (k_eff 5):  rf = (4 + 4*2, 7 + 4*4) = (12, 23)      jump = (2, 4)
#   c4 k [1,3] s [2,1]:    rf = (12 + 0*2, 23 + 2*4) = (12, 31)    jump = (4, 4)
# Shapes: 40x40 -> c1 38x18 -> p2 19x9 -> c3 15x5 -> c4 8x3.
RF_HAND = {"c1": ((3, 5), (1, 2)), "p2": ((4, 7), (2, 4)), "c3": ((12, 23), (2, 4)), "c4": ((12, 31), (4, 4))}


def rf_reference() -> list[tuple[str, nn.Module]]:
    """The same stack in torch with positive weights (an avg pool: a max pool's gradient only
    reaches its argmax)."""
    layers = [
        ("c1", nn.Conv2d(1, 2, (3, 5), stride=(1, 2))),
        ("p2", nn.AvgPool2d(2, 2)),
        ("c3", nn.Conv2d(2, 2, 3, dilation=2)),
        ("c4", nn.Conv2d(2, 2, (1, 3), stride=(2, 1))),
    ]
    for _, module in layers:
        if isinstance(module, nn.Conv2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return layers


def gradient_box(layers, upto: str, y: int, x: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the input pixels with a nonzero gradient of unit (0, y, x)
    of layer `upto`: the unit's receptive field, measured."""
    image = torch.ones(1, 1, 40, 40, requires_grad=True)
    value = image
    for name, module in layers:
        value = module(value)
        if name == upto:
            break
    value[0, 0, y, x].backward()
    rows = image.grad[0, 0].abs().sum(dim=1).nonzero().flatten()
    cols = image.grad[0, 0].abs().sum(dim=0).nonzero().flatten()
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


@pytest.mark.parametrize("layer", list(RF_HAND))
def test_receptive_field_and_jump_by_hand_and_by_gradient(layer):
    rf, jump = RF_HAND[layer]
    layers = rf_reference()
    top, bottom, left, right = gradient_box(layers, layer, 0, 0)
    assert (bottom - top, right - left) == rf
    # The jump is how far the field moves between neighbouring units.
    below, right_of = gradient_box(rf_reference(), layer, 1, 0), gradient_box(rf_reference(), layer, 0, 1)
    assert (below[0] - top, right_of[2] - left) == jump
    info = infer(load(RF_NET)).info(layer)
    assert (info.rf, info.jump) == (rf, jump)


@pytest.mark.parametrize(("layer", "y", "x"), [("c1", 2, 3), ("p2", 1, 2), ("c3", 3, 1), ("c4", 2, 2)])
def test_receptive_box_is_the_gradient_box(layer, y, x):
    # No padding anywhere, so the box lies inside the image and must equal the measured one.
    box = receptive_box(load(RF_NET), layer, y, x)
    assert (box.top, box.bottom, box.left, box.right) == gradient_box(rf_reference(), layer, y, x)
    assert box.size == RF_HAND[layer][0]


def test_receptive_field_in_summary_json_and_table(write_spec, capsys):
    path = write_spec(RF_NET)
    assert main(["summary", path, "--json"]) == 0
    layers = {row["name"]: row for row in json.loads(capsys.readouterr().out)["layers"]}
    for name, (rf, jump) in RF_HAND.items():
        assert (tuple(layers[name]["receptive_field"]), tuple(layers[name]["jump"])) == (rf, jump)
    # The flatten sees all 8x3 positions of c4: rows 12 + (8-1)*4 = 40, columns 31 + (3-1)*4 = 39
    # (column 39 is never seen: c4's last column starts at 2*4 = 8 and ends at 8 + 31 = 39).
    assert tuple(layers["fc1"]["receptive_field"]) == (40, 39)
    text = render(infer(load(RF_NET)))
    assert "receptive field of output:  40x39" in text


def test_receptive_field_of_a_merge_is_the_widest_branch():
    text = """\
name: branches
input: {channels: 1, size: 9}
classes: 2
layers:
  - {name: a, type: conv, filters: 2, kernel: 3, padding: same}
  - {name: b, type: conv, filters: 2, kernel: 5, padding: same, inputs: input}
  - {name: s, type: add, inputs: [a, b]}
  - {name: t, type: conv, filters: 2, kernel: 3, padding: same}
  - {type: global_avg_pool}
  - {type: linear, units: 2}
"""
    # add: max(3, 5) = 5, then a 3x3: 5 + 2*1 = 7; measured on a central unit (no padding reached)
    convs = [nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 5, padding=2), nn.Conv2d(2, 2, 3, padding=1)]
    for conv in convs:
        nn.init.ones_(conv.weight)
        nn.init.zeros_(conv.bias)
    image = torch.ones(1, 1, 9, 9, requires_grad=True)
    out = convs[2](convs[0](image) + convs[1](image))
    out[0, 0, 4, 4].backward()
    rows = image.grad[0, 0].sum(dim=1).nonzero().flatten()
    assert int(rows.max() - rows.min()) + 1 == 7
    report = infer(load(text))
    assert report.info("s").rf == (5, 5)
    assert report.info("t").rf == (7, 7)
