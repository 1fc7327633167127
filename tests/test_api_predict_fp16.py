"""`specc.predict` runs what `specc compile` writes, an `--io fp16` model included, on the
execution provider asked for."""

from __future__ import annotations

import numpy as np
import pytest

import specc
from specc.cli import main
from specc.errors import UserError
from tests.conftest import ROOT

SPEC = str(ROOT / "specs" / "allcnn_c_fmnist.yaml")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16")
    assert main(["compile", SPEC, "--target", "onnx", "-o", str(out), "--seed", "3", "--force"]) == 0
    args = ["compile", SPEC, "--target", "onnx", "-o", str(out), "--seed", "3", "--force"]
    assert main([*args, "--precision", "fp16", "--io", "fp16"]) == 0
    return out / "allcnn_c_fmnist.onnx", out / "allcnn_c_fmnist.fp16.onnx"


def test_an_io_fp16_model_predicts_what_the_fp32_one_does(models):
    fp32, fp16 = models
    pixels = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28)).astype(np.float32)
    want, got = specc.predict(fp32, pixels), specc.predict(fp16, pixels)
    assert got.probs.dtype == np.float32 and got.probs.shape == (3, 10)
    np.testing.assert_allclose(got.probs, want.probs, atol=2e-3)  # fp16 rounding of a 10-way softmax


def test_a_missing_provider_is_one_line(models):
    with pytest.raises(UserError, match=r"^--provider cuda: this onnxruntime has no CUDAExecutionProvider"):
        specc.predict(models[0], np.zeros((1, 1, 28, 28), np.float32), provider="cuda")
    with pytest.raises(UserError, match="applies to an ONNX model"):
        specc.predict(specc.build(SPEC), np.zeros((1, 1, 28, 28), np.float32), provider="cpu")
