"""Round trip of every spec in specs/ and specs/zoo/ through specc's own ONNX: compiled
without folding, then imported with the specc metadata removed (as any foreign ONNX comes)
gives the same layers — names, types, options, shapes, parameter counts — except the layers
inference ONNX does not carry (dropout, identity), and bit-identical weights; imported with
the metadata, it gives the spec's canonical form exactly. Oracles: the source spec and its
random weights. Kept fast: batch 1, the zoo at 32x32 where it takes it, the widest layers of
the largest networks narrowed with `--set` (the structure is what is under test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from import_helpers import comparable

import specc
from specc.cli import main
from specc_onnx import emit, random_weights, to_bytes
from specc_onnx.importer import import_model

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "specs" / "zoo").glob("*.yaml"))
NARROW = {  # the structure is under test, not the width: the largest networks narrowed
    "allcnn_large": [f"layers.conv{i}.filters=8" for i in range(1, 18)],
    "resnet50": ["input.size=32", "layers.4.vars.width=[8, 8, 8, 8]", "layers.4.vars.out=[32, 32, 32, 32]"],
    "convnext_tiny": ["input.size=32", "layers.3.vars.dim=[16, 16, 16]", "layers.3.vars.wide=[64, 64, 64]"],
    "vgg16": ["input.size=32", "layers.fc6.units=32", "layers.fc7.units=32"],
    "alexnet": ["layers.fc6.units=32", "layers.fc7.units=32"],
}
ZOO_SIZE = {"unet_small": 64}  # the U-Net's own size; the rest of the zoo takes 32x32


def _load(path: Path) -> specc.Graph:
    overrides = NARROW.get(path.stem)
    if overrides is None and path.parent.name == "zoo":
        overrides = [f"input.size={ZOO_SIZE.get(path.stem, 32)}"]
    return specc.load(str(path), overrides=overrides)


def _params(graph: specc.Graph) -> list[tuple[str, int]]:
    report = specc.check(graph).report
    return [(n.name, report.info(n.name).params) for n in graph.nodes if report.info(n.name).params]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_spec_comes_back_from_its_onnx(path):
    graph = _load(path)
    weights = random_weights(graph, seed=1)
    ends_in_softmax = graph.is_classifier and graph.output.op.makes_probabilities
    model = emit(graph, weights, fold_bn=False, batch=1, output="probs" if ends_in_softmax else "logits")

    restored = import_model(to_bytes(model))  # with the metadata: the spec as written
    assert specc.fmt(restored.graph) == specc.fmt(graph)
    assert restored.notes == ("restored from the spec the model carries (specc.spec, verified)",)

    del model.metadata_props[:]
    imported = import_model(to_bytes(model))  # as a foreign model: the graph alone
    assert imported.notes == ()
    assert comparable(imported.graph)[:-1] == comparable(graph)[:-1]  # labels live in the metadata
    shapes, imported_shapes = specc.check(graph).report.shapes, specc.check(imported.graph).report.shapes
    assert imported_shapes == {k: v for k, v in shapes.items() if k in imported_shapes}
    assert _params(imported.graph) == _params(graph)
    assert set(imported.weights) == set(weights)
    for key, array in weights.items():
        assert imported.weights[key].tobytes() == np.asarray(array, np.float32).tobytes(), key


def test_a_folded_batch_norm_comes_back_as_the_conv_bias_and_says_so(tmp_path, capsys):
    """`specc compile --target onnx` folds batch_norm (the default); import says so."""
    spec = ROOT / "specs" / "resnet_tiny.yaml"
    assert main(["compile", str(spec), "--target", "onnx", "-o", str(tmp_path)]) == 0
    onnx_path = next(tmp_path.glob("*.onnx"))
    capsys.readouterr()
    out_spec = tmp_path / "back.yaml"
    assert main(["import", str(onnx_path), "-o", str(out_spec)]) == 0
    out = capsys.readouterr().out
    assert "  note: batch_norm stem_bn was folded into stem: it comes back as stem with bias\n" in out
    graph = specc.load(str(out_spec))
    assert "batch_norm" not in {n.type for n in graph.nodes} and graph.node("stem").op.bias  # type: ignore[attr-defined]


def test_the_compile_command_round_trips_without_metadata(tmp_path, capsys):
    """The commands themselves: `specc compile --target onnx --no-fold`, the metadata
    stripped, `specc import`: the same layers (dropout aside)."""
    import onnx

    spec = ROOT / "specs" / "allcnn_c.yaml"
    assert main(["compile", str(spec), "--target", "onnx", "--no-fold", "-o", str(tmp_path)]) == 0
    onnx_path = next(tmp_path.glob("*.onnx"))
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    onnx.save(model, str(onnx_path))
    assert main(["import", str(onnx_path), "-o", str(tmp_path / "back.yaml")]) == 0
    graph = specc.load(str(spec))
    logits = graph.with_nodes(graph.nodes[:-1])  # --output logits (the default) leaves the softmax out
    assert comparable(specc.load(str(tmp_path / "back.yaml")))[2:6] == comparable(logits)[2:6]
