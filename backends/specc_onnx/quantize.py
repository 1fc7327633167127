"""int8 quantization of a specc ONNX model with onnxruntime.quantization, and the measurements
that decide whether the int8 model may replace the fp32 one: agreement, accuracy, logit
difference, size, latency and throughput.

numpy and onnx only (onnxruntime imported on use); the caller supplies preprocessed images.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from specc.errors import UserError
from specc_onnx.runtime import make_session

METHODS = ("minmax", "entropy", "percentile")
MODES = ("static", "dynamic")
CALIBRATION_BATCH = 32  # images per calibration step: the histograms of entropy/percentile grow per batch
BENCH_ROUNDS = 5
ENTROPY_BINS = 2048  # TensorRT's histogram size for entropy calibration
ENTROPY_QUANTIZED_BINS = 128


@dataclass(frozen=True)
class QuantizeSettings:
    """What `quantize_model` does; recorded in the int8 model's metadata."""

    mode: str = "static"
    method: str = "minmax"
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    calibration_images: int = 0
    calibration_seed: int = 0
    calibration_source: str = ""

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "format": "QDQ" if self.mode == "static" else "QOperator",
            "method": self.method if self.mode == "static" else None,
            "per_channel": self.per_channel,
            "exclude": list(self.exclude),
            "calibration": (
                {"images": self.calibration_images, "seed": self.calibration_seed, "source": self.calibration_source}
                if self.mode == "static"
                else None
            ),
        }


def layer_nodes(model: onnx.ModelProto, layers: Sequence[str]) -> list[str]:
    """The node names that make up the given specc layers (`conv1` is `conv1/conv` + `conv1`);
    a UserError naming any layer the model does not have."""
    names = [node.name for node in model.graph.node]
    out: list[str] = []
    for layer in layers:
        found = [n for n in names if n == layer or n.startswith(layer + "/")]
        if not found:
            known = sorted({n.split("/")[0] for n in names})
            raise UserError(f"--exclude {layer}: no such layer in the model (layers: {', '.join(known)})")
        out += found
    return out


def conv_layers(model: onnx.ModelProto) -> list[str]:
    """The specc layers holding a Conv or Gemm node, in graph order."""
    out: list[str] = []
    for node in model.graph.node:
        layer = node.name.split("/")[0]
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and layer not in out:
            out.append(layer)
    return out


class _Reader:
    """A CalibrationDataReader over preprocessed images (N, C, H, W), in batches."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {input_name: images[i : i + CALIBRATION_BATCH]} for i in range(0, len(images), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # onnxruntime's interface; a single pass is all quantize_static needs
        pass


def quantize_model(
    fp32: onnx.ModelProto, settings: QuantizeSettings, calibration: np.ndarray | None
) -> onnx.ModelProto:
    """The int8 model of `fp32` (static QDQ calibrated on `calibration`, or dynamic), with
    fp32's metadata plus `specc.quantization`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    CalibrationDataReader.register(_Reader)
    exclude = layer_nodes(fp32, settings.exclude)
    with tempfile.TemporaryDirectory(prefix="specc-quantize-") as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        onnx.save_model(fp32, src)
        # Shape inference plus onnxruntime's basic fusions, so that the quantizer sees every
        # tensor's type and quantizes fused ops rather than their parts.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if settings.mode == "dynamic":
            quantize_dynamic(
                pre, out, per_channel=settings.per_channel, weight_type=QuantType.QInt8, nodes_to_exclude=exclude
            )
        else:
            assert calibration is not None and len(calibration) > 0
            method = {
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[settings.method]
            overrides = {}
            if settings.method == "entropy":
                # quantize_static passes no histogram size to its entropy calibrator, whose default
                # (128 bins for 128 quantized bins) leaves its KL search one candidate, the whole
                # range, i.e. minmax's; so specc calibrates with ENTROPY_BINS itself and hands the
                # ranges over as overrides of a minmax run (docs/deploy.md has the evidence).
                overrides = entropy_ranges(pre, calibration, Path(tmp, "entropy.onnx"), fp32.graph.input[0].name)
                method = CalibrationMethod.MinMax
            quantize_static(
                pre,
                out,
                _Reader(fp32.graph.input[0].name, calibration),  # type: ignore[arg-type]
                quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method=method,
                extra_options={
                    "CalibTensorRangeSymmetric": False,
                    "ActivationSymmetric": False,
                    **({"TensorQuantOverrides": overrides} if overrides else {}),
                },
            )
        int8 = onnx.load_model(out)
    _copy_metadata(fp32, int8, {"quantization": settings.to_dict()})
    return int8


def entropy_ranges(model: Path, calibration: np.ndarray, scratch: Path, input_name: str) -> dict[str, list[dict]]:
    """Activation ranges that minimise the KL divergence between each tensor's histogram
    (ENTROPY_BINS bins) and its int8 version, as TensorQuantOverrides for quantize_static."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    CalibrationDataReader.register(_Reader)
    calibrator = create_calibrator(
        model,
        calibrate_method=CalibrationMethod.Entropy,
        augmented_model_path=str(scratch),
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS, "symmetric": False},
    )
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress: stdout is the caller's (--json)
        calibrator.collect_data(_Reader(input_name, calibration))  # type: ignore[arg-type]
        ranges = calibrator.compute_data()
    return {
        name: [{"rmin": np.float32(np.asarray(lo).ravel()[0]), "rmax": np.float32(np.asarray(hi).ravel()[0])}]
        for name, (lo, hi) in ((name, ranges[name].range_value) for name in ranges.data)
    }


def _copy_metadata(src: onnx.ModelProto, dst: onnx.ModelProto, extra: dict) -> None:
    props = {p.key: p.value for p in src.metadata_props}
    props |= {f"specc.{k}": json.dumps(v, sort_keys=True) for k, v in extra.items()}
    del dst.metadata_props[:]
    for key in sorted(props):
        dst.metadata_props.add(key=key, value=props[key])


def set_metadata(model: onnx.ModelProto, key: str, value) -> None:
    """Set `specc.<key>` to JSON of `value`, keeping the keys sorted."""
    props = {p.key: p.value for p in model.metadata_props}
    props[f"specc.{key}"] = json.dumps(value, sort_keys=True)
    del model.metadata_props[:]
    for k in sorted(props):
        model.metadata_props.add(key=k, value=props[k])


def class_scores(session, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The last output (the class scores) of `session` on `images`, in batches."""
    name, output = session.get_inputs()[0].name, session.get_outputs()[-1].name
    return np.concatenate(
        [session.run([output], {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    )


@dataclass(frozen=True)
class Comparison:
    images: int
    agreement: float  # fraction of images whose top-1 class is the same in both models
    max_logit_diff: float
    accuracy_fp32: float | None
    accuracy_int8: float | None

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "agreement": self.agreement,
            "max_logit_diff": self.max_logit_diff,
            "accuracy_fp32": self.accuracy_fp32,
            "accuracy_int8": self.accuracy_int8,
        }


def compare(fp32_scores: np.ndarray, int8_scores: np.ndarray, labels: np.ndarray | None) -> Comparison:
    """Top-1 agreement, largest |logit difference| and the accuracy of both against `labels`."""
    top_fp32, top_int8 = fp32_scores.argmax(axis=1), int8_scores.argmax(axis=1)
    return Comparison(
        images=len(fp32_scores),
        agreement=float((top_fp32 == top_int8).mean()),
        max_logit_diff=float(np.abs(fp32_scores - int8_scores).max()),
        accuracy_fp32=None if labels is None else float((top_fp32 == labels).mean()),
        accuracy_int8=None if labels is None else float((top_int8 == labels).mean()),
    )


def benchmark(
    models: dict[str, onnx.ModelProto | str | Path],
    input_shape: tuple[int, int, int],
    batches: Sequence[int],
    *,
    threads: int | None = None,
    rounds: int = BENCH_ROUNDS,
    min_seconds: float = 0.2,
) -> dict[str, dict[int, dict[str, float]]]:
    """{model: {batch: {"latency_ms": median per run, "images_per_s": ...}}}: one warm-up,
    then `rounds` interleaved rounds (every model at every batch size per round) of runs
    lasting at least `min_seconds`; medians over the rounds, so that load on the machine
    hits every contender alike."""
    sessions = {
        name: make_session(model, providers=["CPUExecutionProvider"], threads=threads) for name, model in models.items()
    }
    rng = np.random.default_rng(0)
    feeds = {b: rng.standard_normal((b, *input_shape)).astype(np.float32) for b in batches}
    times: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in sessions}
    repeats: dict[tuple[str, int], int] = {}
    for name, session in sessions.items():  # warm-up, and how many runs make min_seconds
        for b in batches:
            start = time.perf_counter()
            _run_once(session, feeds[b])
            elapsed = max(time.perf_counter() - start, 1e-6)
            repeats[name, b] = max(1, min(1000, int(min_seconds / elapsed)))
    for _ in range(rounds):
        for b in batches:
            for name, session in sessions.items():
                n = repeats[name, b]
                start = time.perf_counter()
                for _ in range(n):
                    _run_once(session, feeds[b])
                times[name][b].append((time.perf_counter() - start) / n)
    return {
        name: {
            b: {"latency_ms": 1000 * statistics.median(ts), "images_per_s": b / statistics.median(ts)}
            for b, ts in per_batch.items()
        }
        for name, per_batch in times.items()
    }


def _run_once(session, feed: np.ndarray) -> None:
    session.run(None, {session.get_inputs()[0].name: feed})
