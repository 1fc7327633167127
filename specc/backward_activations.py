"""The backward of the activation family (`specc.ops_activations`): the plain derivative, under
backprop, deconvnet and guided alike — only ReLU-type layers have a method-specific rule (see
`specc.gradbase`), and these are not ReLUs (relu6 clips at 0 like one, but the paper's rules are
defined for ReLU; it passes its plain derivative like the rest).

Each derivative is written from the forward value that is cheapest to use — the output y where
it determines the derivative (sigmoid: y·(1 - y)), else the input x — and matches PyTorch's
backward kernels, at the edges too:

| type        | reads | dy/dx                                                             |
|-------------|-------|-------------------------------------------------------------------|
| sigmoid     | y     | y · (1 - y)                                                       |
| tanh        | y     | 1 - y²                                                            |
| relu6       | y     | 1 where 0 < y < 6, else 0                                         |
| hardtanh    | y     | 1 where min_val < y < max_val, else 0                             |
| elu         | x     | 1 where x > 0, else alpha · exp(x)                                |
| selu        | x     | scale where x > 0, else scale · alpha · exp(x)                    |
| gelu        | x     | Φ(x) + x · φ(x); tanh: ½(1 + t) + ½x(1 - t²)·√(2/π)(1 + 3κx²)     |
| silu        | x     | s · (1 + x · (1 - s)), s = sigmoid(x)                             |
| mish        | x     | t + x · sigmoid(x) · (1 - t²), t = tanh(softplus(x))              |
| hardswish   | x     | 0 where x <= -3, x/3 + 1/2 where x < 3, else 1                    |
| hardsigmoid | x     | 1/6 where -3 < x < 3, else 0                                      |
| softplus    | x     | 1 where βx > threshold, else sigmoid(βx)                          |

(y pins the derivative down where the output is a monotone function of the input that keeps
the open interval: y in (0, 6) exactly where x is.)
"""

from __future__ import annotations

import math

from specc.gradbase import Backward, GradBuilder, Value, where_of
from specc.lowering import Step
from specc.ops_activations import ELU, GELU, Hardtanh, Softplus

# PyTorch's SELU constants (torch.nn.SELU)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_KAPPA = 0.044715  # the cubic term of the tanh approximation


def _output(b: GradBuilder, step: Step) -> Value:
    return b.value(step.name)


def _input(b: GradBuilder, step: Step) -> Value:
    return b.value(step.inputs[0])


def _sigmoid(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where, y = where_of(step), _output(b, step)
    slope = b.mul(y, b.affine(y, -1.0, 1.0, f"{where}/complement"), f"{where}/slope")
    return [b.mul(g, slope, f"{where}/chain")]


def _tanh(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where, y = where_of(step), _output(b, step)
    slope = b.affine(b.mul(y, y, f"{where}/square"), -1.0, 1.0, f"{where}/slope")
    return [b.mul(g, slope, f"{where}/chain")]


def _relu6(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [b.clip_mask(g, _output(b, step), 0.0, 6.0, f"{where_of(step)}/inside")]


def _hardtanh(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    assert isinstance(op, Hardtanh)
    return [b.clip_mask(g, _output(b, step), op.min_val, op.max_val, f"{where_of(step)}/inside")]


def _exponential(b: GradBuilder, step: Step, g: Value, scale: float, alpha: float) -> Value:
    """g · scale where x > 0, else g · scale · alpha · exp(x): the backward of (s)elu."""
    where, x = where_of(step), _input(b, step)
    negative = b.scale(b.exp(x, f"{where}/exp"), scale * alpha, f"{where}/negative_slope")
    slope = b.select(b.compare(x, ">", 0.0, f"{where}/positive"), scale, negative, f"{where}/slope")
    return b.mul(g, slope, f"{where}/chain")


def _elu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    assert isinstance(op, ELU)
    return [_exponential(b, step, g, 1.0, op.alpha)]


def _selu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    return [_exponential(b, step, g, SELU_SCALE, SELU_ALPHA)]


def _gelu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    assert isinstance(op, GELU)
    where, x = where_of(step), _input(b, step)
    square = b.mul(x, x, f"{where}/square")
    if op.approximate == "tanh":
        root = math.sqrt(2 / math.pi)
        cube = b.mul(square, x, f"{where}/cube")
        inner = b.add(x, b.scale(cube, GELU_KAPPA, f"{where}/kappa_cube"), f"{where}/inner")
        t = b.tanh(b.scale(inner, root, f"{where}/scaled"), f"{where}/tanh")
        left = b.affine(t, 0.5, 0.5, f"{where}/left")  # ½(1 + t)
        d_inner = b.affine(square, 3 * GELU_KAPPA * root, root, f"{where}/d_inner")  # √(2/π)(1 + 3κx²)
        sech2 = b.affine(b.mul(t, t, f"{where}/t_square"), -0.5, 0.5, f"{where}/half_sech2")  # ½(1 - t²)
        right = b.mul(b.mul(x, sech2, f"{where}/x_sech2"), d_inner, f"{where}/right")
    else:
        cdf = b.affine(b.erf(b.scale(x, math.sqrt(0.5), f"{where}/scaled"), f"{where}/erf"), 0.5, 0.5, f"{where}/cdf")
        pdf = b.scale(
            b.exp(b.scale(square, -0.5, f"{where}/exponent"), f"{where}/exp"),
            1 / math.sqrt(2 * math.pi),
            f"{where}/pdf",
        )
        left, right = cdf, b.mul(x, pdf, f"{where}/x_pdf")
    return [b.mul(g, b.add(left, right, f"{where}/slope"), f"{where}/chain")]


def _silu(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where, x = where_of(step), _input(b, step)
    s = b.sigmoid(x, f"{where}/sigmoid")
    rest = b.affine(
        b.mul(x, b.affine(s, -1.0, 1.0, f"{where}/complement"), f"{where}/x_complement"), 1.0, 1.0, f"{where}/rest"
    )
    return [b.mul(g, b.mul(s, rest, f"{where}/slope"), f"{where}/chain")]


def _mish(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where, x = where_of(step), _input(b, step)
    t = b.tanh(b.softplus(x, f"{where}/softplus"), f"{where}/tanh")
    sech2 = b.affine(b.mul(t, t, f"{where}/t_square"), -1.0, 1.0, f"{where}/sech2")
    right = b.mul(b.mul(x, b.sigmoid(x, f"{where}/sigmoid"), f"{where}/x_sigmoid"), sech2, f"{where}/right")
    return [b.mul(g, b.add(t, right, f"{where}/slope"), f"{where}/chain")]


def _hardswish(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    # As PyTorch's autograd has it at the kinks: 0 up to and including -3, 1 from 3 on.
    where, x = where_of(step), _input(b, step)
    ramp = b.select(
        b.compare(x, "<", 3.0, f"{where}/ramp_end"), b.affine(x, 1 / 3, 0.5, f"{where}/ramp"), 1.0, f"{where}/upper"
    )
    slope = b.select(b.compare(x, "<=", -3.0, f"{where}/off"), 0.0, ramp, f"{where}/slope")
    return [b.mul(g, slope, f"{where}/chain")]


def _hardsigmoid(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    where = where_of(step)
    return [b.scale(b.clip_mask(g, _input(b, step), -3.0, 3.0, f"{where}/inside"), 1 / 6, f"{where}/chain")]


def _softplus(b: GradBuilder, step: Step, g: Value) -> list[Value]:
    op = step.op
    assert isinstance(op, Softplus)
    where = where_of(step)
    scaled = b.scale(_input(b, step), op.beta, f"{where}/scaled")
    slope = b.select(
        b.compare(scaled, ">", op.threshold, f"{where}/linear"),
        1.0,
        b.sigmoid(scaled, f"{where}/sigmoid"),
        f"{where}/slope",
    )
    return [b.mul(g, slope, f"{where}/chain")]


BACKWARD: dict[str, Backward] = {
    "sigmoid": Backward(_sigmoid, reads=("output",)),
    "tanh": Backward(_tanh, reads=("output",)),
    "relu6": Backward(_relu6, reads=("output",)),
    "hardtanh": Backward(_hardtanh, reads=("output",)),
    "elu": Backward(_elu, reads=("input",)),
    "selu": Backward(_selu, reads=("input",)),
    "gelu": Backward(_gelu, reads=("input",)),
    "silu": Backward(_silu, reads=("input",)),
    "mish": Backward(_mish, reads=("input",)),
    "hardswish": Backward(_hardswish, reads=("input",)),
    "hardsigmoid": Backward(_hardsigmoid, reads=("input",)),
    "softplus": Backward(_softplus, reads=("input",)),
}
