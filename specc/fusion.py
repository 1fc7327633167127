"""Fused activations: the `activation:` field of conv and linear layers.

A layer's fused activation is written in one of two forms:
- a name, `activation: gelu` (or `none`): the activation with its default parameters, except
  those the layer has a field of the same name for (`slope` of leaky_relu), which come from the
  layer, as they always have: `{type: conv, activation: leaky_relu, slope: 0.2}`;
- a mapping, `activation: {type: elu, alpha: 0.5}`: validated by the activation's own op class
  (its fields, defaults and "expected" texts), its parameters all its own.

The field's type is a pydantic union tagged by the form ("name", or the mapping's `type`), so
an error inside a mapping is reported at `activation.alpha` with `elu.alpha`'s text (see
`specc.validation`). A mapping whose parameters are all the defaults is the name (`{type:
elu}` is `elu`), so that canonical YAML has one spelling of it; a mapping is dumped with its
`type` and the parameters that differ from the defaults. Backends never see either form:
`specc.lowering` turns the layer's `activation_op()` into a step of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, PlainSerializer, Tag, WithJsonSchema

from specc.opbase import LayerOp

NONE = "none"
NAME_TAG = "name"  # the union branch of the name form


def _form(value: Any) -> str | None:
    """The union branch of a value: the name form, a mapping's type, or None (not an activation)."""
    if isinstance(value, str):
        return NAME_TAG
    if isinstance(value, LayerOp):
        return value.kind
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value["type"]
    return None


def _mapping_schema(cls: type[LayerOp]) -> dict:
    """The JSON Schema of `{type: <kind>, <parameters>}`."""
    schema = cls.model_json_schema()
    assert "$defs" not in schema, f"{cls.kind}: a fusable activation's fields must be plain values"
    props = {name: prop for name, prop in schema.get("properties", {}).items() if name != "type"}
    for name, prop in props.items():
        prop.pop("title", None)
        prop["description"] = f"{cls.kind}.{name}: {cls.model_fields[name].description or ''}"
    return {
        "type": "object",
        "description": f"{cls.kind}: {cls.doc}",
        "properties": {"type": {"const": cls.kind}, **props},
        "required": ["type"],
        "additionalProperties": False,
    }


def dump(value: str | LayerOp) -> str | dict:
    """A fused activation as plain data: the name, or the mapping's type and non-default parameters."""
    if isinstance(value, str):
        return value
    return {"type": value.kind, **value.model_dump(mode="json", exclude_defaults=True, exclude={"type"})}


def fused_activation_type(fusable: dict[str, type[LayerOp]], layer_fields: Iterable[str]) -> Any:
    """The type of the `activation:` field: a name among `fusable` (or none), or a mapping
    validated by one of their classes. `layer_fields`: the layer's own fields that a name-form
    activation reads (a mapping with such a parameter stays a mapping, even at the defaults)."""
    reads_layer = set(layer_fields)

    def canonical(value: str | LayerOp) -> str | LayerOp:
        if isinstance(value, LayerOp):
            cls = type(value)
            if not reads_layer & set(cls.model_fields) and value == cls():
                return value.kind
        return value

    names = Annotated[Literal[(*fusable, NONE)], Tag(NAME_TAG)]  # type: ignore[valid-type]
    branches = [Annotated[cls, Tag(kind), WithJsonSchema(_mapping_schema(cls))] for kind, cls in fusable.items()]
    return Annotated[
        Union[(names, *branches)],  # type: ignore[valid-type]  # noqa: UP007 - built at run time
        Discriminator(_form),
        AfterValidator(canonical),
        PlainSerializer(dump),
    ]


def describe_fusable(fusable: dict[str, type[LayerOp]]) -> str:
    """The "expected" text of the `activation:` field."""
    return (
        f"{', '.join(fusable)} or {NONE}, or a mapping {{type: <one of these>, <its parameters>}}"
        " such as {type: elu, alpha: 0.5}"
    )


def fused_op(layer: LayerOp, value: str | LayerOp, fusable: dict[str, type[LayerOp]]) -> LayerOp | None:
    """The layer's fused activation `value` as a standalone op (None for `none`): a mapping is
    its op; a name takes its parameters from the layer's fields of the same name, else defaults."""
    if isinstance(value, LayerOp):
        return value
    cls = fusable.get(value)
    if cls is None:
        return None
    shared = {k: getattr(layer, k) for k in cls.model_fields if k != "type" and k in type(layer).model_fields}
    return cls.model_validate(shared)


def activation_text(value: str | LayerOp) -> str:
    """A fused activation for the summary: `relu`, `elu(alpha=0.5)`; empty for none."""
    if isinstance(value, str):
        return "" if value == NONE else value
    # The non-default parameters; all of them for a mapping at the defaults (`{type: leaky_relu}`,
    # which stays a mapping because its name form would read the layer's `slope`).
    params = value.model_dump(mode="json", exclude_defaults=True, exclude={"type"}) or value.model_dump(
        mode="json", exclude={"type"}
    )
    return f"{value.kind}({', '.join(f'{k}={v}' for k, v in params.items())})"
