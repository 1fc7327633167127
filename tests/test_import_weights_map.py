"""`--weights-map`: a plain state_dict in another model's naming (torchvision's
`layer1.0.conv1.weight`) loads into an imported spec through the map `specc import --torch`
writes. Oracle: the source module's own forward pass with those weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from specc.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = "\n\ndef small():\n    torch.manual_seed(0)\n    return ResNet18(num_classes=10, width=8).eval()\n"


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Path, Path]:
    """examples/resnet18.py at width 8, imported; (folder, spec)."""
    folder = tmp_path_factory.mktemp("map")
    source = folder / "resnet18.py"
    shutil.copy(ROOT / "examples" / "resnet18.py", source)
    source.write_text(source.read_text() + SMALL)
    spec = folder / "r.yaml"
    assert main(["import", "--torch", f"{source}:small", "--input", "3x32x32", "-o", str(spec)]) == 0
    return folder, spec


def _foreign_state_dict(folder: Path) -> tuple[Path, torch.nn.Module]:
    """Other weights than the imported ones (trained, say), saved as a plain state_dict."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("resnet18_copy", folder / "resnet18.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.small()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(
                    torch.rand(tensor.shape, generator=generator) * (1.0 if "var" in key else 0.2)
                    + 0.5 * ("var" in key)
                )
    path = folder / "foreign.pt"
    torch.save(model.state_dict(), path)
    return path, model


def test_import_writes_a_map_of_torchvision_names(imported):
    folder, spec = imported
    text = (folder / "r.map.yaml").read_text()
    assert "format: specc-weights-map-v1\nkeys:\n  conv1.weight: conv1.weight\n  bn1.weight: bn1.weight\n" in text
    assert "  layer1_0_conv1.weight: layer1.0.conv1.weight\n" in text
    assert "  layer2_0_downsample_1.running_var: layer2.0.downsample.1.running_var\n" in text


def test_a_foreign_state_dict_loads_through_the_map_and_computes_the_same(imported, capsys):
    folder, spec = imported
    weights, model = _foreign_state_dict(folder)
    out = folder / "build"
    argv = ["compile", str(spec), "--target", "onnx", "-o", str(out), "--weights", str(weights), "--no-fold"]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()[-1] + "\n"  # after the stem pool's rounding warning (issue 11)
    assert err.startswith(f"error: {weights} does not fit spec 'ResNet18' (hash ")
    assert ": missing layer1_0_conv1.weight, layer1_0_bn1.weight, layer1_0_bn1.bias (+" in err
    assert "; unexpected layer1.0.conv1.weight, layer1.0.bn1.weight, layer1.0.bn1.bias (+" in err
    assert err.endswith(" — if it holds another model's names, pass --weights-map MAP.yaml (specc import writes one)\n")
    assert not out.exists()

    assert main([*argv, "--weights-map", str(folder / "r.map.yaml")]) == 0
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x).numpy()
    session = ort.InferenceSession(str(out / "ResNet18.onnx"), providers=["CPUExecutionProvider"])
    got = np.asarray(session.run(None, {"input": x.numpy()})[0])
    assert float(np.abs(got - want).max()) / float(np.abs(want).max()) <= 1e-5


def test_visualize_reads_the_map_too(imported, tmp_path, capsys):
    folder, spec = imported
    weights, _ = _foreign_state_dict(folder)
    png = tmp_path / "v.png"
    argv = ["visualize", str(spec), "--weights", str(weights), "--weights-map", str(folder / "r.map.yaml")]
    assert main([*argv, "--no-image", "--layer", "layer1_0_conv1", "--top-units", "1", "-o", str(png)]) == 0
    assert png.stat().st_size > 0


def test_map_refusals_are_one_line(imported, tmp_path, capsys):
    folder, spec = imported
    assert main(["compile", str(spec), "--weights-map", str(folder / "r.map.yaml"), "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --weights-map: only with --weights (it renames that state_dict's keys)\n"
    bad = tmp_path / "bad.map.yaml"
    bad.write_text("format: specc-weights-map-v1\nkeys:\n  conv1.weight: stem.0.weight\n")
    weights, _ = _foreign_state_dict(folder)
    argv = ["compile", str(spec), "--weights", str(weights), "--weights-map", str(bad), "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == f"error: --weights-map {bad}: {weights} has no stem.0.weight (for conv1.weight)"
    )
