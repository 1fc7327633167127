"""The ONNX emitter against its outside oracles: onnx's checker, strict shape inference and
onnxruntime. Weights are seeded numpy arrays here; parity with torch is test_onnx_parity."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import specc
import specc_onnx
from specc.emit import spec_hash
from specc.errors import UserError
from specc.ops import OPS
from specc.transforms.fold_batch_norm import why_not_foldable
from specc_onnx import OP_TABLE, emit, fold_batch_norm, random_weights, save, to_bytes, verify
from specc_onnx.metadata import decode_arrays, encode_arrays
from specc_onnx.runtime import make_session, read_metadata

CPU = ["CPUExecutionProvider"]  # parity is defined on the CPU provider (CUDA may use TF32)

SPECS = sorted(Path(__file__).resolve().parent.parent.joinpath("specs").glob("*.yaml"))
SMALL = [p for p in SPECS if p.stem not in ("allcnn_large", "allcnn_imagenet")]


def run(model, x: np.ndarray) -> np.ndarray:
    return make_session(model, CPU, threads=1).run(None, {"input": x})[0]


def images(n: int, shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def allcnn_c():
    graph = specc.load(SPECS[0].parent / "allcnn_c.yaml")
    return graph, random_weights(graph, 0)


FLAT_BN = """
name: flat_bn
input: {channels: 2, size: 4}
classes: 3
labels: [a, b, c]
layers:
  - {type: avg_pool, kernel: 3, stride: 2, padding: 1, ceil_mode: true, count_include_pad: true}
  - {type: max_pool, kernel: 2, stride: 1, ceil_mode: true}
  - {type: leaky_relu, slope: 0.2}
  - {type: flatten}
  - {type: batch_norm}
  - {name: fc1, type: linear, units: 6, activation: leaky_relu, slope: 0.1}
  - {name: fc2, type: linear, units: 6, bias: false}
  - {name: bn2, type: batch_norm, affine: false}
  - {name: fc3, type: linear, units: 3, inputs: bn2}
  - {type: dropout, rate: 0.5}
"""


# -- the op table ------------------------------------------------------------------------
def test_op_table_covers_every_op_exactly():
    assert set(OP_TABLE) == set(OPS)


@pytest.mark.parametrize("kind", sorted(OPS))
def test_op_keyword_arguments_are_the_op_fields(kind):
    """Each emitter's keywords name fields of its op (no typos that would silently default)."""
    fields = set(OPS[kind].model_fields) - {"type"}
    signature = inspect.signature(OP_TABLE[kind])
    keywords = {n for n, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert keywords <= fields
    takes_rest = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    assert takes_rest or keywords == fields


# -- every spec: checker, strict shape inference == specc's shapes ------------------------
# (allcnn_large and allcnn_imagenet are verified in test_onnx_parity, where they are emitted anyway)
@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.stem)
def test_every_spec_passes_checker_and_shape_inference(path):
    graph = specc.load(path)
    model = emit(graph, random_weights(graph, 0))
    shapes = verify(model, graph, to_bytes(model))  # raises on any disagreement
    assert shapes[graph.output.name] == ("batch", graph.classes)
    conv_names = {n.name for n in graph.nodes if n.type == "conv"}
    assert {f"{n}.weight" for n in conv_names} <= {i.name for i in model.graph.initializer}
    assert not any(n.op_type == "Dropout" for n in model.graph.node)


def test_fixed_batch_and_opsets(allcnn_c):
    graph, weights = allcnn_c
    for opset in (13, 17, 21):
        model = emit(graph, weights, opset=opset, batch=4)
        assert model.opset_import[0].version == opset
        assert verify(model, graph)[graph.output.name] == (4, 10)
    with pytest.raises(UserError, match="--opset 7"):
        emit(graph, weights, opset=7)
    with pytest.raises(UserError, match="--batch 0"):
        emit(graph, weights, batch=0)


def test_non_sequential_and_flat_layers_run(allcnn_c):
    graph = specc.load(FLAT_BN)
    weights = random_weights(graph, 1)
    for fold in (True, False):
        model = emit(graph, weights, fold_bn=fold)
        verify(model, graph)
        assert run(model, images(2, (2, 4, 4))).shape == (2, 3)
    folded = emit(graph, weights)
    assert [n.op_type for n in folded.graph.node].count("BatchNormalization") == 1  # after flatten: no producer


# -- runtime behaviour -------------------------------------------------------------------
def test_dynamic_batch_runs_at_1_and_3(allcnn_c):
    graph, weights = allcnn_c
    model = emit(graph, weights)
    x = images(3, (3, 32, 32))
    three = run(model, x)
    one = run(model, x[:1])
    assert three.shape == (3, 10) and one.shape == (1, 10)
    np.testing.assert_allclose(one[0], three[0], atol=1e-5)


def test_probs_output_sums_to_one_and_matches_logits(allcnn_c):
    graph, weights = allcnn_c
    x = images(2, (3, 32, 32))
    logits = run(emit(graph, weights), x)
    probs = run(emit(graph, weights, output="probs"), x)
    assert emit(graph, weights, output="probs").graph.output[0].name == "probs"
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-6)


def test_probs_appends_softmax_when_the_spec_has_none():
    graph = specc.load(FLAT_BN)
    model = emit(graph, random_weights(graph), output="probs")
    verify(model, graph)
    assert model.graph.node[-1].op_type == "Softmax"
    np.testing.assert_allclose(run(model, images(2, (2, 4, 4))).sum(1), 1.0, atol=1e-6)


# -- batch_norm folding --------------------------------------------------------------------
def test_folding_keeps_outputs_and_removes_batch_norm():
    graph = specc.load(SPECS[0].parent / "resnet_tiny.yaml")
    weights = random_weights(graph, 3)  # gamma, beta, running mean and var all non-trivial
    x = images(2, (3, 32, 32))
    folded, kept = emit(graph, weights), emit(graph, weights, fold_bn=False)
    assert not any(n.op_type == "BatchNormalization" for n in folded.graph.node)
    assert sum(n.op_type == "BatchNormalization" for n in kept.graph.node) == 6
    np.testing.assert_allclose(run(folded, x), run(kept, x), atol=1e-4)
    assert '["stem","stem_bn"]' in read_metadata(folded).extra["folded"]


def test_fold_pass_is_pure_and_says_why_not():
    graph = specc.load(FLAT_BN)
    weights = random_weights(graph)
    result = fold_batch_norm(graph, weights)
    assert result.folded == (("fc2", "bn2"),)
    assert result.skipped == (
        ("bn1", "its input 'flatten1' is a flatten, not a conv or linear or conv_transpose layer"),
    )
    assert "bn2" in graph.by_name and "bn2" not in result.graph.by_name  # input graph untouched
    assert result.graph.node("fc3").inputs == ("fc2",)
    assert weights["fc2.weight"] is not result.weights["fc2.weight"]
    relu_first = specc.load(FLAT_BN.replace("units: 6, bias: false", "units: 6, activation: relu"))
    assert why_not_foldable(relu_first, relu_first.node("bn2")) == "'fc2' applies relu before it"


# -- determinism, metadata, errors ---------------------------------------------------------
def test_emission_is_byte_identical(allcnn_c, tmp_path):
    graph, weights = allcnn_c
    first = to_bytes(emit(graph, weights))
    again = to_bytes(emit(specc.load(SPECS[0].parent / "allcnn_c.yaml"), {k: v.copy() for k, v in weights.items()}))
    assert first == again
    save(emit(graph, weights), tmp_path / "a.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["a.onnx"]  # no temporary file left


def test_metadata_round_trip(allcnn_c, tmp_path):
    graph = specc.load(
        "name: small\ninput: {channels: 3, size: 4}\nclasses: 10\n"
        "labels: [airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck]\n"
        "layers:\n  - {type: conv, filters: 10, kernel: 3}\n  - {type: global_avg_pool}\n"
    )
    weights = random_weights(graph, 0)
    zca = np.arange(48 * 48, dtype=np.float32).reshape(48, 48) / 7
    gcn = {"scale": 55.0, "sqrt_bias": 0.0, "min_divisor": 1e-8}
    zca_part = {"matrix": zca, "mean": [0.5] * 48, "eps": 0.01}
    pre = {"format": 1, "kind": "gcn_zca", "shape": [3, 4, 4], "gcn": gcn, "zca": zca_part}
    save(emit(graph, weights, metadata={"preprocessing": pre, "weights": "seed 0"}), tmp_path / "m.onnx")
    meta = read_metadata(tmp_path / "m.onnx")
    assert (meta.name, meta.spec_hash, meta.classes, meta.output) == ("small", spec_hash(graph), 10, "logits")
    assert meta.labels[3] == "cat" and meta.input_shape == (3, 4, 4)
    assert specc.load(meta.spec) == graph
    assert meta.extra["weights"] == "seed 0"
    np.testing.assert_array_equal(meta.preprocessing["zca"]["matrix"], zca)
    np.testing.assert_array_equal(meta.preprocessing["zca"]["mean"], [0.5] * 48)
    assert "then the kind's formula" in meta.pixels
    plain = read_metadata(emit(graph, weights))
    assert plain.preprocessing is None and plain.pixels.endswith("x = p / 255, nothing else")
    keys = [p.key for p in emit(graph, weights).metadata_props]
    assert keys == sorted(keys) and all(k.startswith("specc.") for k in keys)


def test_array_encoding_keeps_short_lists_readable():
    assert encode_arrays({"mean": [0.1, 0.2, 0.3]}) == {"mean": [0.1, 0.2, 0.3]}
    encoded = encode_arrays({"m": np.ones((5, 5))})
    assert set(encoded["m"]) == {"float32_base64", "shape"}
    np.testing.assert_array_equal(decode_arrays(encoded)["m"], np.ones((5, 5)))


def test_mismatched_weights_name_the_key(allcnn_c):
    graph, weights = allcnn_c
    missing = {k: v for k, v in weights.items() if k != "conv3.weight"}
    with pytest.raises(UserError, match="no 'conv3.weight'"):
        emit(graph, missing)
    wrong = {**weights, "conv3.bias": np.zeros(5, np.float32)}
    with pytest.raises(UserError, match=r"'conv3.bias' has shape \(5,\), the spec needs \(96,\)"):
        emit(graph, wrong)


def test_bad_model_files_give_one_line(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot a model" * 20)
    with pytest.raises(UserError, match="junk.onnx: not an ONNX model") as info:
        read_metadata(tmp_path / "junk.onnx")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no such file"):
        read_metadata(tmp_path / "missing.onnx")


def test_backend_does_not_import_torch():
    source = "\n".join(p.read_text() for p in Path(specc_onnx.__file__).parent.glob("*.py"))
    assert "import torch" not in source


def test_layers_that_feed_nothing_are_not_emitted():
    graph = specc.load(
        FLAT_BN.replace(
            "  - {type: dropout, rate: 0.5}",
            "  - {name: dead, type: relu, inputs: fc1}\n  - {type: dropout, rate: 0.5, inputs: fc3}",
        )
    )
    model = emit(graph, random_weights(graph))
    verify(model, graph)
    assert "dead" not in {n.name for n in model.graph.node}
