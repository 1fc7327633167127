"""`specc quantize` and `specc bench` of a compiled model: int8 models written only when they agree with fp32,
their figures checked against onnxruntime sessions run here, and every user error one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import specc
from specc.cli import main
from specc.training.data.idx import FASHION_DEFAULT_DIRS
from specc_onnx import emit, random_weights, save
from specc_onnx.quantize import class_scores
from specc_onnx.runtime import make_session, read_metadata

ROOT = Path(__file__).resolve().parents[1]
CPU = ["CPUExecutionProvider"]
HAVE_FASHION = (Path(FASHION_DEFAULT_DIRS[0]) / "t10k-labels-idx1-ubyte.gz").exists()
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="Debian package dataset-fashion-mnist is not installed")
EVAL = 400


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """The quarter-width ALL-CNN-C for 1x28x28 (random weights), a classless net, a plain ONNX file."""
    folder = tmp_path_factory.mktemp("quantize")
    assert main(["compile", str(ROOT / "specs/allcnn_c_fmnist.yaml"), "--target", "onnx", "-o", str(folder)]) == 0
    features = specc.load(
        "name: feats\ninput: {channels: 1, size: 8}\nlayers:\n  - {type: conv, filters: 2, kernel: 3, padding: same}\n"
    )
    save(emit(features, random_weights(features, 0)), folder / "feats.onnx")
    plain = onnx.load(folder / "allcnn_c_fmnist.onnx")
    del plain.metadata_props[:]
    onnx.save(plain, folder / "plain.onnx")
    (folder / "corrupt.onnx").write_bytes(b"\x00\xffnot a model")
    return folder


@pytest.fixture(scope="module")
def quantized(models) -> Path:
    """One static int8 run on real Fashion-MNIST (speed measured too), shared by the tests below."""
    if not HAVE_FASHION:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    out = models / "int8.onnx"
    args = ["quantize", str(models / "allcnn_c_fmnist.onnx"), "--data", "fashion-mnist", "-o", str(out)]
    code = main([*args, "--calibration", "64", "--eval", str(EVAL), "--gate", "0.5", "--json"])
    assert code == 0
    return out


@needs_fashion
def test_int8_model_is_written_smaller_with_the_metadata_and_honest_agreement(models, quantized):
    out = quantized
    fp32_path = models / "allcnn_c_fmnist.onnx"
    assert out.stat().st_size < fp32_path.stat().st_size / 2
    fp32_meta, int8_meta = read_metadata(fp32_path), read_metadata(out)
    assert (int8_meta.name, int8_meta.spec, int8_meta.labels, int8_meta.input_shape) == (
        fp32_meta.name,
        fp32_meta.spec,
        fp32_meta.labels,
        fp32_meta.input_shape,
    )
    record = json.loads(int8_meta.extra["quantization"])
    assert record["mode"] == "static" and record["format"] == "QDQ" and record["per_channel"] is True
    assert record["calibration"] == {"images": 64, "seed": 0, "source": "fashion-mnist train"}
    figures = record["figures"]
    assert figures["int8_bytes"] == out.stat().st_size and figures["images"] == EVAL
    assert set(figures["speed"]["batch1_latency_ms"]) == {"fp32", "int8"}
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(out).graph.node)

    # Recompute agreement and accuracy independently: raw test images / 255 (no preprocessing recorded).
    from specc.training.data import load_dataset

    test = load_dataset("fashion-mnist", None, "test")
    images, labels = (test.images[:EVAL] / 255.0).astype(np.float32), test.labels[:EVAL]
    fp32 = class_scores(make_session(fp32_path, providers=CPU), images).argmax(axis=1)
    int8 = class_scores(make_session(out, providers=CPU), images).argmax(axis=1)
    assert figures["agreement"] == pytest.approx(float((fp32 == int8).mean()))
    assert figures["accuracy_int8"] == pytest.approx(float((int8 == labels).mean()))
    assert figures["accuracy_fp32"] == pytest.approx(float((fp32 == labels).mean()))


@needs_fashion
def test_predict_runs_the_int8_model(quantized, capsys):
    out = quantized
    capsys.readouterr()
    assert main(["predict", str(out), str(ROOT / "docs/example.png"), "--top-k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "allcnn_c_fmnist" and len(result["results"][0]["top"]) == 2


@needs_fashion
def test_a_gate_the_int8_model_misses_writes_nothing_and_exits_2(models, capsys):
    out = models / "never.onnx"
    args = ["quantize", str(models / "allcnn_c_fmnist.onnx"), "--data", "fashion-mnist", "-o", str(out)]
    code = main([*args, "--calibration", "32", "--eval", "1000", "--gate", "1", "--no-bench", "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 2 and not out.exists()
    assert report["agreement"] < 1 and "output" not in report
    assert captured.err == (
        f"error: {models / 'allcnn_c_fmnist.onnx'}: int8 top-1 agreement {report['agreement']:.4f}"
        " is below --gate 1.0 — nothing written\n"
    )
    assert report["sensitivity"] and {row["exclude"] for row in report["sensitivity"]} <= {
        f"conv{i}" for i in range(1, 10)
    }


def test_dynamic_mode_on_synthetic_data(models, capsys):
    out = models / "dynamic.onnx"
    args = ["quantize", str(models / "allcnn_c_fmnist.onnx"), "--data", "synthetic", "--mode", "dynamic"]
    assert main([*args, "-o", str(out), "--gate", "0.5", "--no-bench", "--exclude", "conv9"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    record = json.loads(read_metadata(out).extra["quantization"])
    assert (record["mode"], record["calibration"], record["exclude"]) == ("dynamic", None, ["conv9"])
    # an int8 model is not quantized again
    assert main(["quantize", str(out), "--data", "synthetic", "-o", str(models / "again.onnx")]) == 2
    assert capsys.readouterr().err == (
        f"error: {out}: already quantized (specc.quantization in its metadata) — quantize the fp32 model\n"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gate", "0"], "argument --gate: '0' is not in (0, 1]"),
        (["--gate", "nan"], "argument --gate: 'nan' is not in (0, 1]"),
        (["--gate", "1.5"], "argument --gate: '1.5' is not in (0, 1]"),
        (["--calibration", "0"], "argument --calibration: '0' is not a positive integer"),
        (["--exclude", "conv1,"], "argument --exclude: 'conv1,' has an empty layer name"),
        (["--eval", "-5"], "argument --eval: '-5' is not a positive integer"),
    ],
)
def test_bad_flags_are_one_line(models, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", str(models / "allcnn_c_fmnist.onnx"), "--data", "synthetic", *flags])
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"error: specc quantize: {message} (see `specc quantize --help`)\n"


def test_user_errors_name_the_flag_or_file(models, capsys, tmp_path):
    model = str(models / "allcnn_c_fmnist.onnx")
    cases = [
        (
            [model, "--data", "cifar10", "-o", str(tmp_path / "a.onnx")],
            "--data cifar10: gives 3x32x32 images in 10 classes but model 'allcnn_c_fmnist' expects 1x28x28 and 10 classes",
        ),
        (
            [model, "--data", "synthetic", "--exclude", "conv99", "-o", str(tmp_path / "a.onnx")],
            "--exclude conv99: no such layer in the model"
            " (layers: conv1, conv2, conv3, conv4, conv5, conv6, conv7, conv8, conv9, gap1)",
        ),
        (
            [model, "--data", "fashion-mnist", "--data-dir", str(tmp_path / "none"), "-o", str(tmp_path / "a.onnx")],
            f"fashion-mnist: no Fashion-MNIST train split found in {tmp_path / 'none'} (no such directory):"
            " expected train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]",
        ),
        (
            [model, "--data", "synthetic", "-o", model],
            f"-o {model}: already exists — pass --force to overwrite",
        ),
        (
            [str(models / "plain.onnx"), "--data", "synthetic"],
            f"{models / 'plain.onnx'}: an ONNX model, but not one specc compiled (no specc.format metadata)",
        ),
        (
            [str(models / "feats.onnx"), "--data", "synthetic"],
            f"{models / 'feats.onnx'}: quantize compares class scores, but spec 'feats' has no classes"
            " — add 'classes: N' to the spec and compile it again",
        ),
        ([str(tmp_path / "missing.onnx"), "--data", "synthetic"], f"{tmp_path / 'missing.onnx'}: no such file"),
    ]
    for argv, message in cases:
        assert main(["quantize", *argv]) == 2, argv
        assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "a.onnx").exists()


def test_bench_prints_its_table(models, capsys):
    assert (
        main(["bench", str(models / "allcnn_c_fmnist.onnx"), "--batch", "1,8", "--rounds", "2", "--threads", "1"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "allcnn_c_fmnist: 1 thread, onnxruntime on CPUExecutionProvider, 2 interleaved rounds;"
        " ratios against onnxruntime fp32"
    )
    assert lines[1].split()[:3] == ["contender", "batch", "median"]
    assert [line.split()[2] for line in lines[2:]] == ["1", "8"]
    assert all(float(line.split()[3]) > 0 for line in lines[2:])


def test_bench_refuses_a_non_specc_or_corrupt_model_and_bad_batches(models, capsys):
    assert main(["bench", str(models / "plain.onnx")]) == 2
    assert capsys.readouterr().err.endswith("not one specc compiled (no specc.format metadata)\n")
    assert main(["bench", str(models / "corrupt.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {models / 'corrupt.onnx'}: not an ONNX model") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["bench", str(models / "allcnn_c_fmnist.onnx"), "--batch", "0,64"])
    assert capsys.readouterr().err == (
        "error: specc bench: argument --batch: '0,64': expected batch sizes 1 to 4096 separated by commas"
        " (see `specc bench --help`)\n"
    )


def test_entropy_calibration_clips_an_outlier_that_minmax_keeps(capsys):
    """onnxruntime's quantize_static, left to itself, gives entropy the same ranges as minmax
    (docs/deploy.md); specc's entropy ranges must clip a lone outlier."""
    from onnx import numpy_helper

    from specc_onnx.quantize import QuantizeSettings, quantize_model

    graph = specc.load(
        "name: t\ninput: {channels: 1, size: 8}\nclasses: 3\nlayers:\n"
        "  - {type: conv, filters: 4, kernel: 3, padding: same, activation: relu}\n"
        "  - {type: global_avg_pool}\n  - {type: linear, units: 3}\n"
    )
    fp32 = emit(graph, random_weights(graph, 0))
    calibration = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    calibration[0, 0, 0, 0] = 100.0  # one pixel far outside the rest
    scale = {}
    for method in ("minmax", "entropy"):
        int8 = quantize_model(fp32, QuantizeSettings(method=method, calibration_images=64), calibration)
        scale[method] = {
            t.name: float(numpy_helper.to_array(t)) for t in int8.graph.initializer if t.name == "input_scale"
        }
    assert scale["minmax"]["input_scale"] == pytest.approx((100.0 - calibration.min()) / 255, rel=1e-5)
    assert scale["entropy"]["input_scale"] < scale["minmax"]["input_scale"] / 4
    assert capsys.readouterr().out == ""  # onnxruntime's progress prints kept off stdout
