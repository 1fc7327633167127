"""THE transform table: every transform once, read from the transforms themselves.

Each transform declares its options once, as the fields of its dataclass (see
`specc.transforms.base`): the value its flag takes (`argument`), the options it shares with
other transforms by name (`option`), their help, choices (a `Literal` type) and how text
is read. This module derives from them the entries the CLI builds its flags from
(`--replace-pooling conv`), the Python API its keywords (`replace_pooling="conv"`),
`specc transform --list` prints, and the tests iterate over. Shared options
(`--pool-types`, `--skip-unsupported`, `--round`) are listed once in `OPTIONS` and handed
to the transforms that declare them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from specc.errors import UserError, did_you_mean
from specc.transforms.base import OPTION, Transform, choices_of, field_types
from specc.transforms.fc_to_conv import FcToConv
from specc.transforms.fold_batch_norm import FoldBatchNorm
from specc.transforms.linear_scores import LinearScores
from specc.transforms.replace_pooling import ReplacePooling
from specc.transforms.replace_stride import ReplaceStride
from specc.transforms.retarget import SetClasses, SetInput
from specc.transforms.width import WidthMult

# In the order `--help` and `--list` show them.
TRANSFORM_CLASSES: tuple[type[Transform], ...] = (
    ReplacePooling,
    ReplaceStride,
    WidthMult,
    SetClasses,
    SetInput,
    FcToConv,
    LinearScores,
    FoldBatchNorm,
)


def _number(kind: type, what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise UserError(f"{text!r} is not {what}") from None

    return parse


# How text becomes a value of a field's type, where the field does not say (`parse=`).
_PARSERS: dict[Any, Callable[[str], Any]] = {
    int: _number(int, "an integer"),
    float: _number(float, "a number"),
    str: str,
}


def _parser(cls: type[Transform], field: dataclasses.Field) -> Callable[[str], Any] | None:
    """The field's text reader; None for a switch (a bool option)."""
    annotation = field_types(cls)[field.name]
    if field.metadata.get("parse") is not None:
        return field.metadata["parse"]
    if annotation is bool:
        return None
    if choices_of(annotation) is not None:
        return str
    assert annotation in _PARSERS, f"{cls.__name__}.{field.name}: give `parse=` for a {annotation}"
    return _PARSERS[annotation]


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
    parse: Callable[[str], Any] | None  # None: a switch without a value
    metavar: str | None
    choices: tuple[str, ...] | None
    options: tuple[str, ...]
    help: str
    rationale: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def build(self, value: Any, options: dict) -> Transform:
        """The transform with this value (ignored for a switch) and the options it declares."""
        kwargs = {name: options[name] for name in self.options}
        field = self.cls.argument_field()
        if field is not None:
            kwargs[field.name] = value
        return self.cls(**kwargs)


def _entry(cls: type[Transform]) -> Entry:
    field = cls.argument_field()
    options = tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("role") == OPTION)
    if field is None:
        parse, metavar, choices = None, None, None
    else:
        parse, metavar = _parser(cls, field), field.metadata.get("metavar")
        choices = choices_of(field_types(cls)[field.name])
    return Entry(cls.name, cls, parse, metavar, choices, options, cls.help, cls.rationale)


def _options(classes: tuple[type[Transform], ...]) -> dict[str, Option]:
    """Every option the transforms declare, once, in the order they are first declared."""
    out: dict[str, Option] = {}
    for cls in classes:
        for field in dataclasses.fields(cls):
            if field.metadata.get("role") != OPTION:
                continue
            meta = field.metadata
            flag = cls.flag_of(field)
            option = Option(field.name, flag, field.default, _parser(cls, field), meta["metavar"], meta["help"])
            # A name means one option: the same flag, default and help wherever it is declared.
            known = out.setdefault(field.name, option)
            assert known == option, f"{cls.__name__}.{field.name} is declared differently elsewhere"
    return out


TRANSFORMS: dict[str, Entry] = {cls.name: _entry(cls) for cls in TRANSFORM_CLASSES}
OPTIONS: dict[str, Option] = _options(TRANSFORM_CLASSES)


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
    """Build one transform from its table name and value (text from the CLI is parsed; the
    transform checks the value itself, choices included)."""
    e = entry(name)
    if isinstance(value, str) and e.parse is not None:
        value = e.parse(value)
    return e.build(value, options_with_defaults(options))
