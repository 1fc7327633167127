"""What a specc ONNX model tells its caller, in `metadata_props` (all keys `specc.*`).

    specc.format         "1" — marks a model compiled by specc
    specc.name           the spec's name;  specc.spec_hash: sha256 of its canonical YAML
    specc.spec           the canonical YAML itself (the model can be rebuilt from it)
    specc.classes        number of classes, or null (not a classifier);  specc.labels: JSON
                         list of names, or null
    specc.output         what the class scores output holds: "logits" or "probs" ("features"
                         for a network without classes)
    specc.outputs        JSON list of the graph's output names, in order (the class scores last)
    specc.input          JSON: layout NCHW, dtype float32, shape [C, H, W] and how pixels
                         become the input (INPUT_CONTRACT, or NO_PREPROCESSING)
    specc.preprocessing  JSON preprocessing dict (`specc.preprocessing.Preprocessing.to_dict()`),
                         or null: then the input is the pixels scaled to [0, 1], nothing else
    specc.folded         JSON list of [layer, batch_norm] pairs folded together
    + anything the caller adds (e.g. specc.weights: where the weights came from)

Long numeric lists inside the preprocessing (a 3072x3072 ZCA matrix) are stored as
{"float32_base64": ..., "shape": [...]} — four times smaller than decimal JSON;
`read_metadata` restores them as numpy arrays.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np

from specc.emit import spec_hash, to_yaml
from specc.errors import UserError
from specc.ir import Graph

FORMAT = "1"
PREFIX = "specc."
ARRAY_KEY = "float32_base64"
_INLINE_MAX = 16  # numeric lists up to this many values stay readable JSON
INPUT_CONTRACT = (
    "NCHW float32 from RGB (3 channels) or grey (1) pixel values p in 0..255:"
    " x = p * pixel_scale, then the kind's formula (specc.preprocessing)"
)
NO_PREPROCESSING = "NCHW float32 from RGB (3 channels) or grey (1) pixel values p in 0..255: x = p / 255, nothing else"


@dataclass(frozen=True)
class SpeccMetadata:
    """The metadata of a specc ONNX model, decoded."""

    name: str
    spec_hash: str
    spec: str
    classes: int | None  # None: not a classifier
    labels: list[str] | None
    output: str
    input_shape: tuple[int, int, int]
    preprocessing: dict | None
    pixels: str  # how pixel values become the input, in words
    outputs: list[str] = field(default_factory=list)  # the graph's output names (older models: none)
    extra: dict[str, str] = field(default_factory=dict)

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else f"class {index}"


def build_metadata(
    graph: Graph, *, output: str, folded=(), extra: dict | None = None, outputs: list[str] | None = None
) -> dict[str, str]:
    """The `metadata_props` of a model of `graph`, sorted by key; `outputs` names the graph's
    outputs (recorded when given)."""
    c, h, w = graph.input_shape
    props = {
        "format": FORMAT,
        "name": graph.name,
        "spec_hash": spec_hash(graph),
        "spec": to_yaml(graph),
        "classes": _json(graph.classes),
        "labels": _json(list(graph.labels) if graph.labels else None),
        "output": output,
        "preprocessing": "null",
        "folded": _json([list(pair) for pair in folded]),
    }
    if outputs is not None:
        props["outputs"] = _json(list(outputs))
    for key, value in (extra or {}).items():
        key = key.removeprefix(PREFIX)
        if key == "preprocessing":
            value = _json(encode_arrays(value)) if value is not None else "null"
        props[key] = value if isinstance(value, str) else _json(value)
    # Say how pixels become the input, also (especially) when no preprocessing is recorded.
    contract = NO_PREPROCESSING if props["preprocessing"] == "null" else INPUT_CONTRACT
    props["input"] = _json({"layout": "NCHW", "dtype": "float32", "shape": [c, h, w], "pixels": contract})
    return {PREFIX + k: props[k] for k in sorted(props)}


def parse_metadata(props: dict[str, str], source: str) -> SpeccMetadata:
    """Decode `metadata_props`; a one-line UserError when they are not a specc model's."""
    if props.get(PREFIX + "format") is None:
        raise UserError(f"{source}: an ONNX model, but not one specc compiled (no specc.format metadata)")
    if props[PREFIX + "format"] != FORMAT:
        raise UserError(f"{source}: specc metadata format {props[PREFIX + 'format']!r}, this specc reads {FORMAT!r}")
    try:
        get = {k.removeprefix(PREFIX): v for k, v in props.items() if k.startswith(PREFIX)}
        input_info = json.loads(get["input"])
        shape = input_info["shape"]
        preprocessing = json.loads(get.get("preprocessing", "null"))
        known = {"format", "name", "spec_hash", "spec", "classes", "labels", "output", "outputs", "input"}
        known.add("preprocessing")
        classes = json.loads(get["classes"])
        decoded = decode_arrays(preprocessing) if preprocessing is not None else None
        if decoded is not None and not isinstance(decoded, dict):
            raise ValueError(f"preprocessing is a {type(decoded).__name__}, not a mapping")
        meta = SpeccMetadata(
            name=get["name"],
            spec_hash=get["spec_hash"],
            spec=get["spec"],
            classes=None if classes is None else int(classes),
            labels=json.loads(get["labels"]),
            output=get["output"],
            input_shape=(int(shape[0]), int(shape[1]), int(shape[2])),
            preprocessing=decoded,
            pixels=str(input_info.get("pixels", "")),
            outputs=[str(name) for name in json.loads(get.get("outputs", "[]"))],
            extra={k: v for k, v in sorted(get.items()) if k not in known},
        )
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise UserError(f"{source}: damaged specc metadata ({type(exc).__name__}: {exc})") from None
    _check_metadata(meta, source)
    return meta


MAX_INPUT_SIDE = 16384  # pixels per side of a model's input
MAX_INPUT_CHANNELS = 4096
MAX_CLASSES = 10**7


def _check_metadata(meta: SpeccMetadata, source: str) -> None:
    """Refuse metadata no compiled spec can have (a forged or damaged file), naming the field,
    before anything is allocated from it."""
    c, h, w = meta.input_shape
    if not (1 <= c <= MAX_INPUT_CHANNELS and 1 <= h <= MAX_INPUT_SIDE and 1 <= w <= MAX_INPUT_SIDE):
        raise UserError(
            f"{source}: specc.input shape {c}x{h}x{w} — expected 1 to {MAX_INPUT_CHANNELS:,} channels and"
            f" 1 to {MAX_INPUT_SIDE:,} pixels a side"
        )
    if meta.classes is not None and not 1 <= meta.classes <= MAX_CLASSES:
        raise UserError(f"{source}: specc.classes {meta.classes} — expected 1 to {MAX_CLASSES:,}")
    if meta.labels is not None:
        if not isinstance(meta.labels, list) or not all(isinstance(x, str) for x in meta.labels):
            raise UserError(f"{source}: specc.labels — expected a list of names")
        if len(meta.labels) != meta.classes:
            raise UserError(
                f"{source}: specc.labels names {len(meta.labels)} classes, specc.classes says {meta.classes}"
            )
    if meta.preprocessing is not None:
        from specc.preprocessing import Preprocessing

        try:
            recipe = Preprocessing.from_dict(meta.preprocessing)
        except UserError as exc:
            raise UserError(f"{source}: specc.preprocessing: {str(exc).removeprefix('preprocessing dict: ')}") from None
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise UserError(f"{source}: specc.preprocessing: damaged ({type(exc).__name__}: {exc})") from None
        if recipe.kind == "gcn_zca" and tuple(recipe.shape) != meta.input_shape:  # whitening is per pixel
            raise UserError(
                f"{source}: specc.preprocessing whitens {'x'.join(map(str, recipe.shape))} images,"
                f" the model takes {c}x{h}x{w}"
            )
        if recipe.shape[0] != c:
            raise UserError(
                f"{source}: specc.preprocessing is for {recipe.shape[0]}-channel images, the model takes {c} channels"
            )


def encode_arrays(value):
    """Numeric (nested) lists or arrays of more than _INLINE_MAX values -> base64 float32."""
    if isinstance(value, dict):
        return {k: encode_arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        array = np.asarray(value) if not isinstance(value, np.ndarray) else value
        if array.dtype.kind in "fiu" and array.size > _INLINE_MAX:
            data = np.ascontiguousarray(array, dtype="<f4").tobytes()
            return {ARRAY_KEY: base64.b64encode(data).decode("ascii"), "shape": list(array.shape)}
        if isinstance(value, np.ndarray):
            return value.tolist()
        return [encode_arrays(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def decode_arrays(value):
    """Inverse of `encode_arrays`; encoded lists come back as float32 numpy arrays."""
    if isinstance(value, dict):
        if ARRAY_KEY in value:
            data = base64.b64decode(value[ARRAY_KEY])
            return np.frombuffer(data, dtype="<f4").reshape(value["shape"]).astype(np.float32)
        return {k: decode_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_arrays(v) for v in value]
    return value


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
