"""The JSON Schema of the spec format (`specc schema`), built from the op table so that
editors complete and check every layer type and parameter."""

from __future__ import annotations

import copy

from specc.ops import OPS
from specc.spec import SpecHeader

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
    """The whole schema; layers are a oneOf over the op table plus `repeat` blocks."""
    defs: dict = {}
    layer_refs = []
    default_props = {}
    for kind, cls in OPS.items():
        layer, op_defs = _op_schema(cls, required=True)
        defaults, _ = _op_schema(cls, required=False)
        defs.update(op_defs)
        defs[f"layer_{kind}"] = layer
        layer_refs.append({"$ref": f"#/$defs/layer_{kind}"})
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
    defs["layer"] = {"oneOf": layer_refs + [{"$ref": "#/$defs/repeat"}]}
    header = SpecHeader.model_json_schema()
    defs.update(header.pop("$defs", {}))
    props = header["properties"]
    props["defaults"] = {
        "type": "object",
        "description": SpecHeader.model_fields["defaults"].description,
        "properties": default_props,
        "additionalProperties": False,
    }
    props["layers"] = {
        "description": "a list of layers, or (in a spec with base:) a mapping from layer name to changed parameters",
        "oneOf": [
            {"type": "array", "items": {"$ref": "#/$defs/layer"}},
            {"type": "object", "additionalProperties": {"type": "object"}},
        ],
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
