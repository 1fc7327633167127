"""`specc compile --precision fp16`: float16 weights and activations, fp32 (or fp16) at the
boundary, normalisation and softmax layers kept in fp32; checked against the fp32 model in
onnxruntime and against onnx's reference evaluator computing in numpy float16."""

from __future__ import annotations

import collections
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator
from PIL import Image

import specc
from specc.cli import main
from specc_onnx import emit, random_weights
from specc_onnx.fp16 import RTOL, to_fp16
from specc_onnx.runtime import make_session

CPU = ["CPUExecutionProvider"]
SPEC = """
name: tiny16
input: {channels: 3, size: 8}
classes: 4
layers:
  - {type: conv, filters: 6, kernel: 3, padding: same, activation: relu}
  - {name: norm, type: layer_norm}
  - {type: max_pool, kernel: 2}
  - {type: conv, filters: 4, kernel: 1}
  - {type: global_avg_pool}
  - {type: softmax}
"""


@pytest.fixture(scope="module")
def models():
    graph = specc.load(SPEC)
    fp32 = emit(graph, random_weights(graph, 0), output="probs")
    return fp32, to_fp16(fp32), to_fp16(fp32, io_fp16=True)


def run(model, x):
    return make_session(model, CPU).run(None, {"input": x})[0]


def test_weights_are_fp16_except_in_the_fp32_layers(models):
    fp32, fp16, _ = models
    onnx.checker.check_model(fp16, full_check=True)
    types = {t.name: t.data_type for t in fp16.graph.initializer}
    assert types["conv1.weight"] == TensorProto.FLOAT16 and types["conv2.bias"] == TensorProto.FLOAT16
    assert types["norm.weight"] == TensorProto.FLOAT  # LayerNormalization runs in fp32
    assert fp16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    casts = [(n.input[0], n.attribute[0].i) for n in fp16.graph.node if n.op_type == "Cast"]
    assert ("input", TensorProto.FLOAT16) in casts  # into fp16 where the input is first read
    precision = json.loads({p.key: p.value for p in fp16.metadata_props}["specc.precision"])
    assert precision == {"compute": "float16", "io": "float32", "fp32_layers": ["norm", "softmax1"]}
    weight_bytes = [sum(len(t.raw_data) for t in m.graph.initializer) for m in (fp16, fp32)]
    assert weight_bytes[0] < 0.6 * weight_bytes[1]  # half, but for the fp32 layer norm


def test_outputs_match_fp32_within_fp16_tolerance(models):
    fp32, fp16, io16 = models
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    expected = run(fp32, x)
    got = run(fp16, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=RTOL * np.abs(expected).max())
    got16 = run(io16, x.astype(np.float16))
    assert got16.dtype == np.float16
    np.testing.assert_allclose(got16.astype(np.float32), expected, atol=RTOL * np.abs(expected).max())


def test_true_fp16_arithmetic_stays_within_tolerance(models):
    """onnxruntime's CPU provider computes most fp16 ops in fp32 (next test); onnx's reference
    evaluator computes them in numpy float16, as a GPU stores them."""
    fp32, fp16, _ = models
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = run(fp32, x)
    got = ReferenceEvaluator(fp16).run(None, {"input": x})[0]
    assert got.dtype == np.float32
    assert 0 < np.abs(got - expected).max() <= RTOL * np.abs(expected).max()


def test_onnxruntime_cpu_wraps_fp16_ops_it_lacks_in_casts(models, tmp_path):
    """Documented behaviour: onnxruntime's CPU provider has no fp16 Conv/Relu kernels on x86;
    instead of failing, it inserts Casts and runs them in fp32 (its InsertCastTransformer)."""
    import onnxruntime as ort

    _, fp16, _ = models
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "as_run.onnx")
    ort.InferenceSession(fp16.SerializeToString(), options, providers=CPU)
    ours = collections.Counter(n.op_type for n in fp16.graph.node)["Cast"]
    as_run = collections.Counter(n.op_type for n in onnx.load(tmp_path / "as_run.onnx").graph.node)["Cast"]
    assert as_run > ours


def test_compile_writes_the_fp16_model_beside_fp32_and_reports_parity(tmp_path, capsys):
    (tmp_path / "tiny16.yaml").write_text(SPEC)
    argv = ["compile", str(tmp_path / "tiny16.yaml"), "--target", "onnx", "-o", str(tmp_path)]
    assert main([*argv, "--precision", "fp16", "--io", "fp16"]) == 0
    out = capsys.readouterr().out
    assert "fp16: max |fp16 - fp32|" in out and "tolerance" in out
    model = onnx.load(tmp_path / "tiny16.fp16.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["specc.input"])["dtype"] == "float16"
    # predict feeds it float16 and ranks as the fp32 model does
    assert main([*argv, "--output", "probs"]) == 0
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    capsys.readouterr()
    probs = []
    for name in ("tiny16.fp16.onnx", "tiny16.onnx"):
        assert main(["predict", str(tmp_path / name), str(tmp_path / "a.png"), "--json", "--provider", "cpu"]) == 0
        probs.append({t["index"]: t["prob"] for t in json.loads(capsys.readouterr().out)["results"][0]["top"]})
    assert probs[0].keys() == probs[1].keys()
    np.testing.assert_allclose([probs[0][i] for i in range(4)], [probs[1][i] for i in range(4)], atol=RTOL)


def test_fp16_refusals_are_one_line(tmp_path, capsys):
    (tmp_path / "tiny16.yaml").write_text(SPEC)
    spec = str(tmp_path / "tiny16.yaml")
    assert main(["compile", spec, "--io", "fp16", "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "error: --io fp16: only with --precision fp16 (an fp32 model takes and gives float32)\n"
    )
    graph = specc.load(SPEC)
    weights = random_weights(graph, 0)
    weights["conv1.weight"] = weights["conv1.weight"] * 0 + 1e5  # beyond fp16's 65,504
    with pytest.raises(specc.errors.UserError, match=r"weight 'conv1.weight' holds 1e\+05, beyond fp16's largest"):
        to_fp16(emit(graph, weights))
    assert not list(tmp_path.glob("*.onnx"))


def _has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.cuda
@pytest.mark.skipif(not _has_cuda(), reason="needs onnxruntime-gpu (pip install 'specc[gpu]') and a CUDA device")
def test_fp16_on_cuda_matches_fp32_on_the_cpu(models):
    """Where a GPU is: fp16 arithmetic for real, within the same tolerance."""
    fp32, fp16, _ = models
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    expected = run(fp32, x)
    session = make_session(fp16, ["CUDAExecutionProvider", "CPUExecutionProvider"])  # refuses a silent CPU fallback
    got = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, atol=RTOL * np.abs(expected).max())
