"""What every transform shares: the base class, its result, how its fields are declared,
and how it says why a rule did not apply.

A transform is a frozen dataclass whose fields are its options, each declared once:
`argument(...)` is the transform's value (`conv` of `--replace-pooling conv`; a transform
without one is a switch), `option(...)` an option the command line shares between transforms
by name (`--skip-unsupported`), and a plain field a constructor-only setting. The registry
derives the CLI flags, help, choices (a `Literal` type) and value parsing from these fields.

`apply(graph, report)` takes a shape-checked graph (and its `ShapeReport`, for channel counts
and sizes) and returns a `Rewrite`: a new graph, never the input mutated, plus notes for the
user. A rule that cannot apply to a layer says why, located at that layer; the transform
either refuses (all such layers reported together, as one `SpecError`) or, with
`skip_unsupported`, leaves them in place and reports them as warnings.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args, get_origin, get_type_hints

from specc.errors import Diagnostic, SpecError, UserError, did_you_mean
from specc.ir import Graph, Node
from specc.shapes import ShapeReport

SKIP_HINT = "--skip-unsupported leaves it in place"


@dataclass(frozen=True)
class Rewrite:
    """A transform's output: the new graph and what the user should hear about."""

    graph: Graph
    notes: tuple[Diagnostic, ...] = ()


ARGUMENT, OPTION = "argument", "option"  # the `role` of a field in its metadata


def argument(default: Any = dataclasses.MISSING, *, metavar: str | None = None, parse=None) -> Any:
    """Declare the transform's value, the one its flag takes. `parse` reads it from text (by
    default from the field's type: a `Literal`'s choices, an int, a float)."""
    return dataclasses.field(default=default, metadata={"role": ARGUMENT, "metavar": metavar, "parse": parse})


def option(default: Any, *, help: str, flag: str | None = None, metavar: str | None = None, parse=None) -> Any:
    """Declare an option (`--pool-types max,avg`): its flag (by default `--` and the name), its
    help, and how to read it from text (by default from its type; a bool is a switch)."""
    metadata = {"role": OPTION, "help": help, "flag": flag, "metavar": metavar, "parse": parse}
    return dataclasses.field(default=default, metadata=metadata)


def skip_unsupported_option() -> Any:
    """The option of every rule that may not apply to some layers, declared once."""
    return option(False, help="leave layers a rule cannot rewrite in place and report them, instead of refusing")


@dataclass(frozen=True)
class Transform:
    """Base of every transform. Subclasses are frozen dataclasses and set `name`, `help` (one
    line: what it does) and `rationale` (why one would run it)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    rationale: ClassVar[str] = ""

    def __post_init__(self):
        # A `Literal` field takes one of its choices; checked here, once, for every caller.
        for field, choices in _choices(type(self)):
            value = getattr(self, field.name)
            if value not in choices:
                raise UserError(
                    f"{self.flag_of(field)} {value}: expected one of {', '.join(map(str, choices))}"
                    + did_you_mean(value, choices)
                )

    def apply(self, graph: Graph, report: ShapeReport) -> Rewrite:
        raise NotImplementedError

    @classmethod
    def argument_field(cls) -> dataclasses.Field | None:
        """The field holding the transform's value; None for a switch."""
        return next((f for f in dataclasses.fields(cls) if f.metadata.get("role") == ARGUMENT), None)

    @classmethod
    def flag_of(cls, field: dataclasses.Field) -> str:
        """`--replace-pooling` for the value of replace_pooling, `--pool-types` for an option."""
        if field.metadata.get("role") == ARGUMENT:
            return "--" + cls.name.replace("_", "-")
        return field.metadata.get("flag") or "--" + field.name.replace("_", "-")

    def value(self) -> object:
        """The main option, as the user wrote it (`conv` of `replace_pooling=conv`); True for
        a switch."""
        field = self.argument_field()
        return True if field is None else getattr(self, field.name)

    def label(self) -> str:
        """`replace_pooling=conv`: how errors and diffs name this step."""
        value = self.value()
        if value is True:
            return self.name
        if isinstance(value, tuple):
            value = "x".join(map(str, value))
        return f"{self.name}={value}"


def located(node: Node, message: str, severity: str = "error") -> Diagnostic:
    """A diagnostic at a layer (its spec position, key path and name)."""
    return Diagnostic(node.pos, node.path, message, node.name, severity)


def finish(graph: Graph, refusals: list[Diagnostic], skip_unsupported: bool, notes=()) -> Rewrite:
    """Refuse with every located reason at once, or (skipping) turn them into warnings."""
    if refusals and not skip_unsupported:
        raise SpecError([dataclasses.replace(d, message=f"{d.message} ({SKIP_HINT})") for d in refusals])
    warnings = [dataclasses.replace(d, severity="warning", message=f"left in place: {d.message}") for d in refusals]
    return Rewrite(graph, tuple(notes) + tuple(warnings))


def nothing_to_do(graph: Graph, message: str) -> Rewrite:
    """A transform that found nothing to rewrite returns the graph unchanged, with a note."""
    pos = graph.header("layers")
    return Rewrite(graph, (Diagnostic(pos, "layers", message, "", "warning"),))


@functools.cache
def field_types(cls: type[Transform]) -> dict[str, Any]:
    """The fields' types, resolved (annotations are strings under `from __future__`)."""
    return get_type_hints(cls)


def choices_of(annotation: Any) -> tuple | None:
    """The choices of a `Literal[...]` type; None for any other type."""
    return get_args(annotation) if get_origin(annotation) is Literal else None


@functools.cache
def _choices(cls: type[Transform]) -> tuple[tuple[dataclasses.Field, tuple], ...]:
    hints = field_types(cls)
    fields = ((f, choices_of(hints[f.name])) for f in dataclasses.fields(cls))
    return tuple((f, choices) for f, choices in fields if choices is not None)
