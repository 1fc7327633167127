"""The JSON Schema of the spec format (`specc schema`), built from the op table so that
editors complete and check every layer type and parameter."""

from __future__ import annotations

import copy

from specc.ops import OPS
from specc.spec import SpecHeader
from specc.train_schema import TrainConfig

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _op_schema(cls, required: bool) -> tuple[dict, dict]:
    schema = cls.model_json_schema()
    defs = schema.pop("$defs", {})
    props = copy.deepcopy(schema.get("properties", {}))
    for name, prop in props.items():
        desc = cls.model_fields[name].description if name in cls.model_fields else None
        if desc:
            prop["description"] = f"{cls.kind}.{name}: {desc}"
    out = {
        "type": "object",
        "description": cls.doc,
        "properties": props,
        "additionalProperties": False,
    }
    if required:
        out["properties"]["name"] = {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "layer name",
        }
        out["properties"]["inputs"] = {
            "description": "the layer(s) this one reads (default: the previous layer)",
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
        }
        out["properties"]["type"] = {"const": cls.kind}
        out["required"] = ["type"]
    else:
        out["properties"].pop("type", None)
    return out, defs


def json_schema() -> dict:
    """The whole schema: a layer is a union over the op table discriminated by `type`, or a
    `repeat` block; the `train:` recipe is closed, as `specc check` validates it."""
    defs: dict = {}
    default_props = {}
    for kind, cls in OPS.items():
        layer, op_defs = _op_schema(cls, required=True)
        defaults, _ = _op_schema(cls, required=False)
        defs.update(op_defs)
        defs[f"layer_{kind}"] = layer
        default_props[kind] = defaults
    defs["repeat"] = {
        "type": "object",
        "description": "repeat a block of layers; `${i}` is the 1-based iteration, `vars` give per-iteration"
        " values (`${name}`)",
        "properties": {
            "repeat": {"type": "integer", "minimum": 1},
            "vars": {"type": "object", "additionalProperties": {"type": "array"}},
            # Body layers may hold `$var` placeholders, so they are only checked after expansion.
            "layers": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["repeat", "layers"],
        "additionalProperties": False,
    }
    defs["layer"] = _layer_union(list(OPS))
    header = SpecHeader.model_json_schema()
    defs.update(header.pop("$defs", {}))
    props = header["properties"]
    props["train"] = _train_schema(defs)
    props["defaults"] = {
        "type": "object",
        "description": SpecHeader.model_fields["defaults"].description,
        "properties": default_props,
        "additionalProperties": False,
    }
    props["layers"] = {
        "description": "a list of layers, or (in a spec with base:) a mapping from layer name to changed parameters",
        # Not a oneOf of the two forms: `items` applies to a list only and `additionalProperties`
        # to a mapping only, so an error inside a layer is reported as itself.
        "type": ["array", "object"],
        "items": {"$ref": "#/$defs/layer"},
        "additionalProperties": {"type": "object"},
    }
    return {
        "$schema": DRAFT,
        "title": "specc network spec",
        "type": "object",
        "properties": props,
        # A derived spec (base:) inherits the required fields from its base.
        "if": {"not": {"required": ["base"]}},
        "then": {"required": ["name", "input", "layers"]},
        "additionalProperties": False,
        "$defs": defs,
    }


def _layer_union(kinds: list[str]) -> dict:
    """A layer, discriminated on `type` with if/then rather than `oneOf`: under `oneOf` a
    validator (and an editor) can only say that a layer matched none of the 42 layer types;
    with the branch chosen by `type`, it says which key of *that* type is wrong ("'filter'
    was unexpected" for a conv)."""
    by_type = [
        {
            "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": {"$ref": f"#/$defs/layer_{kind}"},
        }
        for kind in kinds
    ]
    return {
        "type": "object",
        "description": "a layer ({type: conv, filters: 96, ...}) or a repeat block ({repeat: N, layers: [...]})",
        "if": {"required": ["repeat"]},
        "then": {"$ref": "#/$defs/repeat"},
        "else": {
            "required": ["type"],
            "properties": {"type": {"enum": kinds, "description": "the layer type"}},
            "allOf": by_type,
        },
    }


def _train_schema(defs: dict) -> dict:
    """The `train:` section as `TrainConfig` (specc.train_schema) defines it: every key known,
    unknown ones refused (`epoch: 3` fails here as in `specc check`)."""
    schema = TrainConfig.model_json_schema()
    defs.update(schema.pop("$defs", {}))
    schema.pop("title", None)
    schema["description"] = SpecHeader.model_fields["train"].description
    schema["additionalProperties"] = False
    schema["type"] = ["object", "null"]  # not an anyOf with null, which would hide which key is wrong
    return schema
