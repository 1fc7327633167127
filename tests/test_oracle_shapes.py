"""Output shapes with oracles of their own (issue #10).

Every row carries an expected shape worked out by hand from the definition
`out = floor((H + 2p - d(k-1) - 1) / s) + 1` (ceil for `ceil_mode`, with PyTorch's rule that a
last window starting in the right padding is dropped), and the same layer is built as a real
torch.nn module whose forward pass must give the same shape. So a row checks specc against
the hand arithmetic, and the hand arithmetic against PyTorch. Rows whose expectation is
REFUSED must make specc raise a located SpecError, and torch must fail on them too.
"""

from __future__ import annotations

import pytest
import torch
from oracle_helpers import spec_text as oracle_spec_text
from torch import nn

from specc.api import load
from specc.cli import main
from specc.errors import SpecError
from specc.shapes import infer

REFUSED = "refused"


def spec_text(layer: str, c: int, h: int, w: int) -> str:
    return oracle_spec_text(layer, c, h, w, "shapes")


def specc_shape(text: str, layer: str = "x"):
    """The shape specc infers for `layer`, or REFUSED when it raises a SpecError."""
    try:
        return infer(load(text)).shapes[layer]
    except SpecError:
        return REFUSED


def torch_shape(make, c: int, h: int, w: int):
    """(C, H, W) of a real forward pass of `make()` on a 1xCxHxW input, or REFUSED when torch fails."""
    torch.manual_seed(0)
    try:
        module = make()
        with torch.no_grad():
            out = module(torch.zeros(1, c, h, w))
    except (RuntimeError, ValueError):
        return REFUSED
    return tuple(out.shape[1:])


# -- convolutions --------------------------------------------------------------------------
# (layer, input (C, H, W), hand-computed output, the torch module with the same settings)
CONV_ROWS = [
    pytest.param(
        "type: conv, filters: 3, kernel: 3",
        (2, 3, 3),
        (3, 1, 1),  # (3 - 3)/1 + 1 = 1: a valid conv that shrinks to exactly 1x1
        lambda: nn.Conv2d(2, 3, 3),
        id="valid-3x3-to-1x1",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3",
        (2, 2, 2),
        REFUSED,  # (2 - 3)/1 + 1 = 0
        lambda: nn.Conv2d(2, 3, 3),
        id="valid-3x3-on-2x2",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, stride: 2",
        (2, 7, 8),
        (3, 3, 3),  # H: (7 - 3)//2 + 1 = 3; W: (8 - 3)//2 + 1 = floor(2.5) + 1 = 3
        lambda: nn.Conv2d(2, 3, 3, stride=2),
        id="stride2-odd-even",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: [3, 5], stride: [1, 2]",
        (2, 7, 9),
        (3, 5, 3),  # H: (7 - 3)/1 + 1 = 5; W: (9 - 5)//2 + 1 = 3
        lambda: nn.Conv2d(2, 3, (3, 5), stride=(1, 2)),
        id="non-square-kernel-and-stride",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: [1, 7]",
        (2, 1, 7),
        (3, 1, 1),  # H: (1 - 1) + 1 = 1; W: (7 - 7) + 1 = 1
        lambda: nn.Conv2d(2, 3, (1, 7)),
        id="1x7-to-1x1",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: [1, 7]",
        (2, 1, 6),
        REFUSED,  # W: (6 - 7) + 1 = 0
        lambda: nn.Conv2d(2, 3, (1, 7)),
        id="1x7-on-1x6",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, stride: 2, padding: 1",
        (2, 8, 7),
        (3, 4, 4),  # H: (8 + 2 - 3)//2 + 1 = 4; W: (7 + 2 - 3)//2 + 1 = 4
        lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1),
        id="pad1-stride2",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: [1, 5], padding: [0, 2]",
        (2, 4, 4),
        (3, 4, 4),  # H: (4 + 0 - 1) + 1 = 4; W: (4 + 4 - 5) + 1 = 4
        lambda: nn.Conv2d(2, 3, (1, 5), padding=(0, 2)),
        id="non-square-padding",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, dilation: 2",
        (2, 5, 6),
        (3, 1, 2),  # k_eff = 2*(3-1) + 1 = 5; H: (5 - 5) + 1 = 1; W: (6 - 5) + 1 = 2
        lambda: nn.Conv2d(2, 3, 3, dilation=2),
        id="dilation2-valid",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, dilation: 2",
        (2, 4, 9),
        REFUSED,  # k_eff = 5; H: (4 - 5) + 1 = 0
        lambda: nn.Conv2d(2, 3, 3, dilation=2),
        id="dilation2-too-small",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, dilation: [2, 1]",
        (2, 6, 6),
        (3, 2, 4),  # H: k_eff 5 -> (6 - 5) + 1 = 2; W: k_eff 3 -> (6 - 3) + 1 = 4
        lambda: nn.Conv2d(2, 3, 3, dilation=(2, 1)),
        id="dilation-per-axis",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, padding: same, dilation: 2",
        (2, 7, 6),
        (3, 7, 6),  # k_eff 5, pad (5 - 1)/2 = 2 per side: (7 + 4 - 5) + 1 = 7
        lambda: nn.Conv2d(2, 3, 3, padding="same", dilation=2),
        id="same-dilation2",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, padding: same, dilation: 3",
        (2, 7, 5),
        (3, 7, 5),  # k_eff 7, pad 3 per side: (7 + 6 - 7) + 1 = 7, (5 + 6 - 7) + 1 = 5
        lambda: nn.Conv2d(2, 3, 3, padding="same", dilation=3),
        id="same-dilation3",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 2, padding: same, dilation: 2",
        (2, 6, 5),
        (3, 6, 5),  # k_eff 3 is odd, pad 1 per side: (6 + 2 - 3) + 1 = 6
        lambda: nn.Conv2d(2, 3, 2, padding="same", dilation=2),
        id="same-even-kernel-dilation2",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: [3, 5], padding: same",
        (2, 5, 6),
        (3, 5, 6),  # pads (1, 2): (5 + 2 - 3) + 1 = 5, (6 + 4 - 5) + 1 = 6
        lambda: nn.Conv2d(2, 3, (3, 5), padding="same"),
        id="same-non-square",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, padding: same, stride: 2",
        (2, 7, 8),
        (3, 4, 4),  # ceil(7/2) = 4: (7 + 2 - 3)//2 + 1 = 4; ceil(8/2) = 4: (8 + 2 - 3)//2 + 1 = 4
        lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1),  # torch refuses "same" with a stride
        id="same-stride2",
    ),
    pytest.param(
        "type: conv, filters: 3, kernel: 3, padding: same, stride: 2, dilation: 2",
        (2, 9, 9),
        (3, 5, 5),  # k_eff 5, pad 2: (9 + 4 - 5)//2 + 1 = 5 = ceil(9/2)
        lambda: nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2),
        id="same-stride2-dilation2",
    ),
    pytest.param(
        "type: conv, filters: 4, kernel: 3, groups: 2",
        (4, 5, 5),
        (4, 3, 3),  # groups leave the size alone: (5 - 3) + 1 = 3
        lambda: nn.Conv2d(4, 4, 3, groups=2),
        id="groups2",
    ),
    pytest.param(
        "type: conv, filters: 6, kernel: 3, groups: 3",
        (4, 5, 5),
        REFUSED,  # 3 does not divide the 4 input channels
        lambda: nn.Conv2d(4, 6, 3, groups=3),
        id="groups-not-dividing",
    ),
]


@pytest.mark.parametrize(("layer", "in_shape", "expected", "make"), CONV_ROWS)
def test_conv_output_shape(layer, in_shape, expected, make):
    assert torch_shape(make, *in_shape) == expected  # the hand arithmetic agrees with PyTorch
    assert specc_shape(spec_text(layer, *in_shape)) == expected


@pytest.mark.parametrize(
    ("kernel", "dilation"),
    [(2, 1), (4, 1), (2, 3), ([3, 2], 1)],  # k_eff - 1 odd on some axis: no symmetric padding exists
)
def test_same_padding_refuses_even_effective_kernels(kernel, dilation):
    text = spec_text(f"type: conv, filters: 3, kernel: {kernel}, padding: same, dilation: {dilation}", 2, 8, 8)
    with pytest.raises(SpecError, match="'same' padding needs an odd kernel"):
        infer(load(text))


# -- pooling -------------------------------------------------------------------------------
# (kernel, stride, padding, ceil_mode, input H x W, hand-computed output H x W)
POOL_ROWS = [
    pytest.param(2, 2, 1, False, (4, 5), (3, 3), id="k2p1s2"),  # (4+2-2)//2+1 = 3; (5+2-2)//2+1 = floor(2.5)+1 = 3
    pytest.param(2, 1, 1, False, (3, 3), (4, 4), id="k2p1s1"),  # (3 + 2 - 2)/1 + 1 = 4: padding grows the map
    pytest.param(3, 2, 0, False, (8, 9), (3, 4), id="k3s2-floor"),  # (8-3)//2+1 = 3; (9-3)//2+1 = 4
    pytest.param(3, 2, 0, True, (8, 9), (4, 4), id="k3s2-ceil"),  # ceil(5/2)+1 = 4, start 6 < 8 kept; ceil(6/2)+1 = 4
    pytest.param(3, 2, 0, False, (6, 7), (2, 3), id="k3s2-floor-6x7"),  # (6-3)//2+1 = 2; (7-3)//2+1 = 3
    pytest.param(3, 2, 0, True, (6, 7), (3, 3), id="k3s2-ceil-6x7"),  # ceil(3/2)+1 = 3, start 4 < 6; ceil(4/2)+1 = 3
    pytest.param(3, 2, 0, False, (3, 3), (1, 1), id="k3s2-to-1x1"),  # (3 - 3)//2 + 1 = 1
    # PyTorch drops a last window that would start in the right padding:
    # ceil((7+2-2)/2)+1 = 5, but its start (5-1)*2 = 8 >= 7 + 1 -> 4 (= floor's 4).
    pytest.param(2, 2, 1, True, (7, 7), (4, 4), id="k2p1s2-ceil-drop-7"),
    # ceil((5+2-2)/2)+1 = 4, start 6 >= 5 + 1 -> 3; ceil((3+2-2)/2)+1 = 3, start 4 >= 3 + 1 -> 2
    pytest.param(2, 2, 1, True, (5, 3), (3, 2), id="k2p1s2-ceil-drop-5x3"),
    # ceil((8+2-2)/2)+1 = 5, start 8 < 8 + 1: kept; floor gives (8+2-2)//2+1 = 5 as well
    pytest.param(2, 2, 1, True, (8, 8), (5, 5), id="k2p1s2-ceil-keep-8"),
    # ceil((6+2-3)/2)+1 = 4, start 6 < 6 + 1 kept; floor: (6+2-3)//2+1 = 3
    pytest.param(3, 2, 1, True, (6, 6), (4, 4), id="k3p1s2-ceil-6"),
    pytest.param(3, 2, 1, False, (6, 6), (3, 3), id="k3p1s2-floor-6"),
    # non-square: H: ceil((7+2-2)/2)+1 = 5, start 8 >= 8 -> 4; W: ceil((8+2-3)/2)+1 = 5, start 8 < 9 kept
    pytest.param([2, 3], 2, 1, True, (7, 8), (4, 5), id="non-square-ceil"),
    pytest.param([2, 2], [1, 2], 0, False, (5, 5), (4, 2), id="non-square-stride"),  # (5-2)/1+1 = 4; (5-2)//2+1 = 2
    pytest.param(3, 1, 2, False, (5, 5), REFUSED, id="pad-over-half-kernel"),  # torch: pad at most half the kernel
    pytest.param(3, 2, 0, False, (2, 2), REFUSED, id="kernel-over-input"),  # (2 - 3)//2 + 1 = 0
    pytest.param(4, 4, 1, False, (1, 1), REFUSED, id="kernel-over-padded-input"),  # (1 + 2 - 4)//4 + 1 = 0
]


def _pair(value):
    return tuple(value) if isinstance(value, list) else value


def _pool_module(kind: str, kernel, stride, padding, ceil):
    pair = _pair
    if kind == "max_pool":
        return nn.MaxPool2d(pair(kernel), pair(stride), padding, ceil_mode=ceil)
    return nn.AvgPool2d(pair(kernel), pair(stride), padding, ceil_mode=ceil, count_include_pad=False)


@pytest.mark.parametrize("kind", ["max_pool", "avg_pool"])
@pytest.mark.parametrize(("kernel", "stride", "padding", "ceil", "hw", "expected"), POOL_ROWS)
def test_pool_output_shape(kind, kernel, stride, padding, ceil, hw, expected):
    want = expected if expected == REFUSED else (3, *expected)
    made = torch_shape(lambda: _pool_module(kind, kernel, stride, padding, ceil), 3, *hw)
    assert made == want
    layer = f"type: {kind}, kernel: {kernel}, stride: {stride}, padding: {padding}, ceil_mode: {str(ceil).lower()}"
    assert specc_shape(spec_text(layer, 3, *hw)) == want


@pytest.mark.parametrize("kind", ["max_pool", "avg_pool"])
def test_ceil_mode_pool_larger_than_input_gives_one_window(kind):
    # nn.MaxPool2d(3, 2, ceil_mode=True) on 2x2: ceil((2 - 3)/2) + 1 = 0 + 1 = 1, the window starts at 0.
    assert torch_shape(lambda: _pool_module(kind, 3, 2, 0, True), 3, 2, 2) == (3, 1, 1)
    layer = f"type: {kind}, kernel: 3, stride: 2, ceil_mode: true"
    assert specc_shape(spec_text(layer, 3, 2, 2)) == (3, 1, 1)


# -- global pooling, flatten ---------------------------------------------------------------
@pytest.mark.parametrize(("c", "h", "w"), [(5, 1, 1), (3, 4, 7), (1, 9, 2)])
def test_global_avg_pool_and_flatten(c, h, w):
    gap = torch_shape(lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), c, h, w)
    flat = torch_shape(nn.Flatten, c, h, w)
    assert gap == (c,)
    assert flat == (c * h * w,)  # e.g. 3 * 4 * 7 = 84
    assert specc_shape(spec_text("type: global_avg_pool", c, h, w)) == gap
    assert specc_shape(spec_text("type: flatten", c, h, w)) == flat


def test_flatten_size_feeds_linear_exactly():
    # conv 3x3 valid on 3x6x5 with 4 filters -> 4x4x3 -> 48 features -> linear 48*2 + 2 = 98 params
    text = """\
name: head
input: {channels: 3, size: [6, 5]}
classes: 2
layers:
  - {type: conv, filters: 4, kernel: 3}
  - {type: flatten}
  - {type: linear, units: 2}
"""
    report = infer(load(text))
    assert report.shapes["flatten1"] == (48,)
    reference = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(48, 2))
    assert torch_shape(lambda: reference, 3, 6, 5) == (2,)
    assert report.info("fc1").params == sum(p.numel() for p in reference[2].parameters()) == 98


@pytest.mark.parametrize(
    "layer", ["type: global_avg_pool", "type: max_pool, kernel: 1", "type: conv, filters: 2, kernel: 1"]
)
def test_spatial_layers_refuse_flat_vectors(layer):
    text = f"""\
name: flat
input: {{channels: 3, size: 4}}
classes: 2
layers:
  - {{type: flatten}}
  - {{name: x, {layer}}}
  - {{type: linear, units: 2}}
"""
    assert specc_shape(text) == REFUSED


# -- concat and add ------------------------------------------------------------------------
def branches(second: str, merge: str) -> str:
    return f"""\
name: merge
input: {{channels: 3, size: 8}}
classes: 2
layers:
  - {{name: a, type: conv, filters: 4, kernel: 1}}
  - {{name: b, inputs: input, {second}}}
  - {{name: x, type: {merge}, inputs: [a, b]}}
  - {{type: flatten}}
  - {{type: linear, units: 2}}
"""


def _merged(second: nn.Module, merge: str):
    first = nn.Conv2d(3, 4, 1)
    x = torch.zeros(1, 3, 8, 8)
    try:
        with torch.no_grad():
            a, b = first(x), second(x)
            out = torch.cat([a, b], dim=1) if merge == "concat" else a + b
    except RuntimeError:
        return REFUSED
    return tuple(out.shape[1:])


@pytest.mark.parametrize(
    ("second", "make", "merge", "expected"),
    [
        # 4 + 6 channels, both 8x8 (1x1 conv; 3x3 same conv)
        (
            "type: conv, filters: 6, kernel: 3, padding: same",
            lambda: nn.Conv2d(3, 6, 3, padding=1),
            "concat",
            (10, 8, 8),
        ),
        # 8x8 vs (8 + 2 - 3)//2 + 1 = 4x4
        (
            "type: conv, filters: 6, kernel: 3, padding: 1, stride: 2",
            lambda: nn.Conv2d(3, 6, 3, 2, 1),
            "concat",
            REFUSED,
        ),
        ("type: conv, filters: 4, kernel: 3, padding: same", lambda: nn.Conv2d(3, 4, 3, padding=1), "add", (4, 8, 8)),
        ("type: conv, filters: 6, kernel: 3, padding: same", lambda: nn.Conv2d(3, 6, 3, padding=1), "add", REFUSED),
        ("type: conv, filters: 4, kernel: 3, padding: 1, stride: 2", lambda: nn.Conv2d(3, 4, 3, 2, 1), "add", REFUSED),
        # pooling keeps 3 channels: 4 + 3 = 7 at (8 + 2 - 3)/1 + 1 = 8
        ("type: max_pool, kernel: 3, stride: 1, padding: 1", lambda: nn.MaxPool2d(3, 1, 1), "concat", (7, 8, 8)),
    ],
)
def test_concat_and_add(second, make, merge, expected):
    assert _merged(make(), merge) == expected
    assert specc_shape(branches(second, merge)) == expected


def test_concat_of_flat_vectors():
    text = """\
name: flatcat
input: {channels: 2, size: 3}
classes: 2
layers:
  - {type: flatten}
  - {name: a, type: linear, units: 3, inputs: flatten1}
  - {name: b, type: linear, units: 5, inputs: flatten1}
  - {name: x, type: concat, inputs: [a, b]}
  - {type: linear, units: 2}
"""
    assert torch.cat([torch.zeros(1, 3), torch.zeros(1, 5)], dim=1).shape[1:] == (8,)
    assert specc_shape(text) == (8,)


# -- refusals through the CLI --------------------------------------------------------------
@pytest.mark.parametrize(
    ("layer", "hw", "arithmetic"),
    [
        ("type: conv, filters: 3, kernel: 3", (2, 2), "(2 - 3)/1 + 1 = 0"),
        ("type: conv, filters: 3, kernel: 3, dilation: 2", (4, 9), "(4 - 5)/1 + 1 = 0"),
        ("type: max_pool, kernel: 4, padding: 1", (1, 1), "larger than"),
    ],
)
def test_cli_check_exits_2_on_impossible_shapes(write_spec, capsys, layer, hw, arithmetic):
    path = write_spec(spec_text(layer, 2, *hw))
    assert main(["check", path]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5:" in err  # the layer's line: the 5th line of the spec holds it
    assert arithmetic in err


def test_cli_check_exits_0_on_the_boundary(write_spec, capsys):
    path = write_spec(spec_text("type: conv, filters: 3, kernel: 3", 2, 3, 3))  # exactly 1x1
    assert main(["check", path]) == 0
