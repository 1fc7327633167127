"""THE transform table: every transform once, with its name, options, help and rationale.

The CLI builds its flags from this table (`--replace-pooling conv`), the Python API its
keywords (`replace_pooling="conv"`), `specc transform --list` prints it, and the tests
iterate over it. Shared options (`--pool-types`, `--skip-unsupported`, `--round`) are listed
once in `OPTIONS` and handed to the transforms that read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from specc.errors import UserError, did_you_mean
from specc.transforms.base import Transform
from specc.transforms.fc_to_conv import FcToConv
from specc.transforms.replace_pooling import MODES, ReplacePooling, parse_pool_types
from specc.transforms.replace_stride import TARGETS, ReplaceStride
from specc.transforms.retarget import SetClasses, SetInput, parse_input
from specc.transforms.width import WidthMult


def _number(kind: type, what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise UserError(f"{text!r} is not {what}") from None

    return parse


@dataclass(frozen=True)
class Option:
    """An option shared by several transforms (`--skip-unsupported`)."""

    name: str  # the API keyword
    flag: str
    default: Any
    parse: Callable[[str], Any] | None  # None: a switch
    metavar: str | None
    help: str


@dataclass(frozen=True)
class Entry:
    """One transform: how to name it, read its value and build it."""

    name: str
    cls: type[Transform]
    build: Callable[[Any, dict], Transform]
    parse: Callable[[str], Any] | None  # None: a switch without a value
    metavar: str | None
    choices: tuple[str, ...] | None
    options: tuple[str, ...]
    help: str
    rationale: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "pool_types",
            "--pool-types",
            ("max_pool",),
            parse_pool_types,
            "max,avg",
            "pool types --replace-pooling rewrites (default max; avg pools are refused unless listed)",
        ),
        Option(
            "skip_unsupported",
            "--skip-unsupported",
            False,
            None,
            None,
            "leave layers a rule cannot rewrite in place and report them, instead of refusing",
        ),
        Option(
            "round_to",
            "--round",
            1,
            _number(int, "an integer"),
            "N",
            "round scaled channel counts of --width-mult to a multiple of N (default 1)",
        ),
    )
}

TRANSFORMS: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry(
            "replace_pooling",
            ReplacePooling,
            lambda value, o: ReplacePooling(value, o["pool_types"], o["skip_unsupported"]),
            str,
            "RULE",
            MODES,
            ("pool_types", "skip_unsupported"),
            "replace each max-pool: strided (Strided-CNN), conv (ALL-CNN) or convpool (ConvPool-CNN)",
            "The paper's central experiment: is max-pooling needed, or can a network learn its "
            "downsampling? strided removes the pool and strides the conv before it (same "
            "parameters); conv replaces the pool by a learned 3x3/2 convolution; convpool keeps the "
            "pool but adds the same convolution before it, the control for the extra parameters.",
        ),
        Entry(
            "replace_stride",
            ReplaceStride,
            lambda value, o: ReplaceStride(value, skip_unsupported=o["skip_unsupported"]),
            str,
            "POOL",
            tuple(TARGETS),
            ("skip_unsupported",),
            "turn each stride-s conv into a stride-1 conv + a 3x3 max-pool of stride s (same weights)",
            "The inverse of replace_pooling=conv. The paper applies it to a trained ALL-CNN to get "
            "max-pooling switches for the deconvnet; the convolutions keep their names and shapes, "
            "so --weights carries a checkpoint over unchanged.",
        ),
        Entry(
            "width_mult",
            WidthMult,
            lambda value, o: WidthMult(value, o["round_to"]),
            _number(float, "a number"),
            "F",
            None,
            ("round_to",),
            "scale every hidden channel count by F (rounded to --round N); classifier untouched",
            "A cheap capacity knob: half-width models train 4x faster, double-width ones test "
            "whether a result is capacity-bound. The class count and the input are not touched.",
        ),
        Entry(
            "classes",
            SetClasses,
            lambda value, o: SetClasses(value),
            _number(int, "an integer"),
            "N",
            None,
            (),
            "set the number of classes and the classifier's outputs (e.g. 100 for CIFAR-100)",
            "Re-targets a model to another label set: the header's classes and the layer producing "
            "the class scores change together, so the spec stays consistent.",
        ),
        Entry(
            "input",
            SetInput,
            lambda value, o: SetInput(value),
            parse_input,
            "CxHxW",
            None,
            (),
            "set the input shape (e.g. 1x28x28); refused, naming the layer, where a shape breaks",
            "Re-targets a model to other images (MNIST's 1x28x28, ImageNet's 3x227x227). Shapes are "
            "inferred again, so a layer the new size no longer fits is named with its file:line:col.",
        ),
        Entry(
            "fc_to_conv",
            FcToConv,
            lambda value, o: FcToConv(o["skip_unsupported"]),
            None,
            None,
            None,
            ("skip_unsupported",),
            "turn a flatten + linear head into 1x1 convolutions + global average pooling",
            "Section 2 of the paper (after Network in Network): a classifier of 1x1 convolutions and "
            "global averaging has fewer parameters and works on any input size; on a 1x1 map it "
            "computes the same function, and --weights reshapes the trained linear weights.",
        ),
    )
}


def entry(name: str) -> Entry:
    if name not in TRANSFORMS:
        raise UserError(f"unknown transform '{name}'{did_you_mean(name, TRANSFORMS)} (known: {', '.join(TRANSFORMS)})")
    return TRANSFORMS[name]


def options_with_defaults(given: dict | None = None) -> dict:
    """The shared options: the defaults, overridden by `given` (parsed where text)."""
    out = {name: o.default for name, o in OPTIONS.items()}
    for name, value in (given or {}).items():
        if name not in OPTIONS:
            raise UserError(f"unknown option '{name}'{did_you_mean(name, OPTIONS)} (known: {', '.join(OPTIONS)})")
        option = OPTIONS[name]
        out[name] = option.parse(value) if isinstance(value, str) and option.parse else value
    return out


def make(name: str, value: Any, options: dict | None = None) -> Transform:
    """Build one transform from its table name and value (text from the CLI is parsed)."""
    e = entry(name)
    if isinstance(value, str) and e.parse is not None:
        value = e.parse(value)
    if e.choices is not None and value not in e.choices:
        raise UserError(f"{e.flag} {value}: expected one of {', '.join(e.choices)}{did_you_mean(value, e.choices)}")
    return e.build(value, options_with_defaults(options))
