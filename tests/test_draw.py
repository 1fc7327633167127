"""`specc draw`: the layout's promises checked on the SVG it writes (read back with
xml.etree, independent of the drawing code), the --diff highlights against the spec files,
DOT structure, PNG/PDF output and the one-line refusals."""

from __future__ import annotations

import random
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from specc.cli import main
from specc.draw.layout import Rect, layered_layout, sample
from specc.frontend import load
from tests.conftest import SPECS
from tests.outputs_specs import BACKBONE

SVG_NS = "{http://www.w3.org/2000/svg}"
MONO_ADVANCE = 0.602  # DejaVu Sans Mono's advance width per em (its font metrics)


# -- reading an SVG back -------------------------------------------------------------------
def _parse(path: Path):
    """(boxes, edges): boxes[(side, name)] = (attrs, Rect, [texts]); edges = [(attrs, points)]."""
    root = ET.parse(path).getroot()
    boxes, edges = {}, []
    for g in root.iter(f"{SVG_NS}g"):
        if g.get("class") != "node":
            continue
        r = g.find(f"{SVG_NS}rect")
        assert r is not None
        rect = Rect(*(float(r.get(k)) for k in ("x", "y", "width", "height")))  # type: ignore[arg-type]
        texts = [(t.text or "", float(t.get("font-size"))) for t in g.iter(f"{SVG_NS}text")]  # type: ignore[arg-type]
        attrs = {k[5:]: v for k, v in g.attrib.items() if k.startswith("data-")}
        key = (attrs.get("side", ""), attrs["name"])
        assert key not in boxes, f"two boxes for {key}"
        boxes[key] = (attrs, rect, texts)
    for p in root.iter(f"{SVG_NS}path"):
        if p.get("class") == "edge":
            attrs = {k[5:]: v for k, v in p.attrib.items() if k.startswith("data-")}
            edges.append((attrs, _points(p.get("d", ""))))
    return boxes, edges


def _points(d: str, steps: int = 12) -> list[tuple[float, float]]:
    """Points along an SVG path of M/L/C commands (curves sampled)."""
    tokens = re.findall(r"[MLC]|-?\d+(?:\.\d+)?", d)
    out, i, here = [], 0, (0.0, 0.0)
    while i < len(tokens):
        op = tokens[i]
        n = {"M": 2, "L": 2, "C": 6}[op]
        v = [float(t) for t in tokens[i + 1 : i + 1 + n]]
        i += 1 + n
        if op == "C":
            (x0, y0), (c1x, c1y, c2x, c2y, x1, y1) = here, v
            for k in range(1, steps + 1):
                t = k / steps
                a, b, c, e = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
                out.append((a * x0 + b * c1x + c * c2x + e * x1, a * y0 + b * c1y + c * c2y + e * y1))
        elif op == "L":
            out += [
                (here[0] + (v[0] - here[0]) * k / steps, here[1] + (v[1] - here[1]) * k / steps)
                for k in range(1, steps + 1)
            ]
        else:
            out.append((v[0], v[1]))
        here = (v[-2], v[-1])
    return out


def _draw(tmp_path, spec: str, *extra: str, name: str = "net.svg") -> Path:
    out = tmp_path / name
    assert main(["draw", spec, "-o", str(out), *extra]) == 0
    return out


def _graph_edges(spec: str) -> set[tuple[str, str]]:
    """Every (input, layer) pair the spec declares, from the loaded spec's `inputs`."""
    graph = load(spec)
    return {(src, node.name) for node in graph.nodes for src in node.inputs}


def _check_layout(path: Path, spec: str, rankdir: str = "TB") -> None:
    boxes, edges = _parse(path)
    graph = load(spec)
    names = {"input"} | {n.name for n in graph.nodes}
    assert {name for _, name in boxes} == names
    # every layer's box shows its name
    for (_, name), (attrs, _, texts) in boxes.items():
        assert texts[0][0].startswith(name)
        assert any(t == f"\u2192 {attrs['shape']}" for t, _ in texts)
    # no two boxes overlap
    rects = [(k, r) for k, (_, r, _) in boxes.items()]
    for i, (ka, a) in enumerate(rects):
        for kb, b in rects[i + 1 :]:
            assert not a.overlaps(b), f"{ka} overlaps {kb}"
    # text fits its box (DejaVu Sans Mono advances 0.602 em per character)
    for key, (_, rect, texts) in boxes.items():
        for text, size in texts:
            assert len(text) * size * MONO_ADVANCE <= rect.w - 4, f"{key}: {text!r} overflows its box"
    # every graph edge is drawn exactly once, and nothing else
    drawn = [(a["src"], a["dst"]) for a, _ in edges]
    assert sorted(drawn) == sorted(_graph_edges(spec))
    # each edge leaves its source's far side and ends on its target's near side, and crosses no box
    for attrs, points in edges:
        src, dst = boxes[("", attrs["src"])][1], boxes[("", attrs["dst"])][1]
        (x0, y0), (x1, y1) = points[0], points[-1]
        if rankdir == "TB":
            assert abs(y0 - (src.y + src.h)) < 0.2 and src.x <= x0 <= src.x + src.w
            assert abs(y1 - dst.y) < 0.2 and dst.x <= x1 <= dst.x + dst.w
        else:
            assert abs(x0 - (src.x + src.w)) < 0.2 and src.y <= y0 <= src.y + src.h
            assert abs(x1 - dst.x) < 0.2 and dst.y <= y1 <= dst.y + dst.h
        for x, y in points:
            for key, rect in rects:
                assert not rect.contains(x, y, inset=0.5), f"edge {attrs} passes through {key}"


MULTI_OUTPUT = "backbone.yaml"


@pytest.mark.parametrize(
    "spec",
    ["resnet_tiny.yaml", "allcnn_c.yaml", "zoo/resnet50.yaml", "zoo/unet_small.yaml", MULTI_OUTPUT],
)
def test_layout_properties(spec, tmp_path):
    if spec == MULTI_OUTPUT:
        path = tmp_path / spec
        path.write_text(BACKBONE)
        spec_path = str(path)
    else:
        spec_path = str(SPECS / spec)
    _check_layout(_draw(tmp_path, spec_path), spec_path)


def test_left_to_right(tmp_path):
    spec = str(SPECS / "resnet_tiny.yaml")
    _check_layout(_draw(tmp_path, spec, "--rankdir", "LR"), spec, "LR")


def test_resnet_tiny_boxes_by_hand(tmp_path):
    """Shapes and options of a few boxes, worked out from the spec by hand."""
    boxes, edges = _parse(_draw(tmp_path, str(SPECS / "resnet_tiny.yaml"), "--params"))
    text = {name: [t for t, _ in texts] for (_, name), (_, _, texts) in boxes.items()}
    assert text["input"] == ["input", "\u2192 3x32x32"]
    # 3x3 conv, 3 -> 32 channels, no bias: 3*3*3*32 = 864 weights
    assert text["stem"] == [
        "stem : conv",
        "kernel=3 padding=same filters=32",
        "bias=false",
        "\u2192 32x32x32",
        "864 params",
    ]
    # the projection shortcut: 1x1/2 on 32x32 -> 16x16, 32*64 weights
    assert text["b2_proj"][-2:] == ["\u2192 64x16x16", "2,048 params"]
    assert "kernel=1 stride=2" in " ".join(text["b2_proj"])
    assert text["pool"][-1] == "\u2192 64"
    # fc: 64*10 + 10; the last layer is the output
    assert text["fc"][-2:] == ["\u2192 10", "650 params"]
    assert text["softmax"][-1] == "\u21d2 output"
    assert {(a["src"], a["dst"]) for a, _ in edges} >= {("b1_bn2", "b1_add"), ("stem_relu", "b1_add")}


def test_multi_output_marks_each_output(tmp_path):
    path = tmp_path / "backbone.yaml"
    path.write_text(BACKBONE)
    boxes, _ = _parse(_draw(tmp_path, str(path)))
    marked = {name: texts[-1][0] for (_, name), (attrs, _, texts) in boxes.items() if attrs.get("output")}
    assert marked == {
        "stage1": "\u21d2 output 1 of 3",
        "stage2": "\u21d2 output 2 of 3",
        "head": "\u21d2 output 3 of 3",
    }


def _expected_diff(before: Path, after: Path) -> dict[str, set[str]]:
    """Statuses from the two spec files' layer entries, by name (no specc code involved)."""
    old = {entry["name"]: entry for entry in yaml.safe_load(before.read_text())["layers"]}
    new = {entry["name"]: entry for entry in yaml.safe_load(after.read_text())["layers"]}
    return {
        "removed": set(old) - set(new),
        "added": set(new) - set(old),
        "changed": {n for n in set(old) & set(new) if old[n] != new[n]},
    }


def _statuses(boxes) -> dict[str, dict[str, set[str]]]:
    out: dict[str, dict[str, set[str]]] = {"before": {}, "after": {}}
    for (side, name), (attrs, _, _) in boxes.items():
        out[side].setdefault(attrs.get("status", ""), set()).add(name)
    return out


@pytest.mark.parametrize("mode", ["strided", "conv"])
def test_diff_highlights_the_rewrite(mode, tmp_path, capsys):
    before, after = tmp_path / "before.yaml", tmp_path / "after.yaml"
    assert main(["fmt", str(SPECS / "model_c.yaml")]) == 0  # the canonical form names every layer
    before.write_text(capsys.readouterr().out)
    drawn = tmp_path / "transform.svg"
    argv = ["transform", str(before), "--replace-pooling", mode, "-o", str(after), "--draw", str(drawn)]
    assert main(argv) == 0
    expected = _expected_diff(before, after)
    assert expected["removed"] == {"pool1", "pool2"}  # the rewrite did what it says
    for path in (_draw(tmp_path, str(before), "--diff", str(after)), drawn):
        status = _statuses(_parse(path)[0])
        assert status["before"].get("removed", set()) == expected["removed"]
        assert status["after"].get("added", set()) == expected["added"]
        assert status["before"].get("changed", set()) == expected["changed"]
        assert status["after"].get("changed", set()) == expected["changed"]
        assert "added" not in status["before"] and "removed" not in status["after"]
    text = drawn.read_text()
    assert all(words in text for words in ("changed (options differ)", "added", "removed", "unchanged"))


def test_json_names_the_file_and_counts(tmp_path, capsys):
    import json

    out = tmp_path / "net.svg"
    assert main(["draw", str(SPECS / "allcnn_c.yaml"), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # ALL-CNN-C: 14 layers in a chain, plus the input box
    assert report == {
        "specs": ["allcnn_c"],
        "boxes": 15,
        "edges": 14,
        "wrote": [{"path": str(out), "bytes": out.stat().st_size}],
    }


def test_dot_has_one_node_per_layer_and_one_edge_per_graph_edge(tmp_path):
    spec = str(SPECS / "resnet_tiny.yaml")
    dot = _draw(tmp_path, spec, name="net.dot").read_text()
    assert dot.startswith('digraph "resnet_tiny" {') and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    nodes = re.findall(r'^\s*"(\w+)" \[label="', dot, re.M)
    edges = re.findall(r'^\s*"(\w+)" -> "(\w+)" \[', dot, re.M)
    assert sorted(nodes) == sorted(["input"] + [n.name for n in load(spec).nodes])
    assert sorted(edges) == sorted(_graph_edges(spec))
    # every label is one quoted string: quotes inside are escaped
    assert all(line.count('"') % 2 == 0 for line in dot.splitlines())


def test_png_and_pdf(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    png = _draw(tmp_path, str(SPECS / "allcnn_c.yaml"), name="net.png")
    svg = ET.parse(_draw(tmp_path, str(SPECS / "allcnn_c.yaml"))).getroot()
    with Image.open(png) as image:  # one scene unit is one pixel: the PNG has the SVG's size
        assert image.size == (round(float(svg.get("width"))), round(float(svg.get("height"))))  # type: ignore[arg-type]
    pdf = _draw(tmp_path, str(SPECS / "allcnn_c.yaml"), name="net.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_weights_show_the_checkpoint(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import specc

    model = specc.build(str(SPECS / "allcnn_c.yaml"), seed=3)
    ckpt = tmp_path / "w.pt"
    torch.save(model.state_dict(), ckpt)
    boxes, _ = _parse(_draw(tmp_path, str(SPECS / "allcnn_c.yaml"), "--weights", str(ckpt)))
    rms = float(model.state_dict()["conv1.weight"].pow(2).mean().sqrt())
    assert f"weight rms {rms:.3g}" in [t for t, _ in boxes[("", "conv1")][2]]
    capsys.readouterr()
    out = tmp_path / "other.svg"
    assert main(["draw", str(SPECS / "resnet_tiny.yaml"), "--weights", str(ckpt), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {ckpt} does not fit spec 'resnet_tiny'")
    assert not out.exists()


def _refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    return captured.err


def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys):
    spec = str(SPECS / "allcnn_c.yaml")
    bad = tmp_path / "net.bmp"
    assert _refused(["draw", spec, "-o", str(bad)], capsys) == (
        f"error: -o {bad}: unknown diagram format '.bmp' — use .svg, .png, .pdf or .dot\n"
    )
    out = tmp_path / "net.svg"
    missing = tmp_path / "missing.yaml"
    assert _refused(["draw", str(missing), "-o", str(out)], capsys) == f"error: {missing}: no such file\n"
    assert _refused(["draw", spec, "--diff", str(missing), "-o", str(out)], capsys) == (
        f"error: --diff {missing}: no such file\n"
    )
    assert _refused(["draw", spec, "--diff", str(tmp_path), "-o", str(out)], capsys) == (
        f"error: --diff {tmp_path}: is a directory, expected a YAML spec file\n"
    )
    after = tmp_path / "after.yaml"
    argv = ["transform", spec, "--replace-stride", "maxpool", "-o", str(after), "--draw", str(bad)]
    assert (
        _refused(argv, capsys) == f"error: --draw {bad}: unknown diagram format '.bmp' — use .svg, .png, .pdf or .dot\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_without_matplotlib_png_refused_svg_and_dot_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    spec = str(SPECS / "allcnn_c.yaml")
    err = _refused(["draw", spec, "-o", str(tmp_path / "net.png")], capsys)
    assert err == (
        "error: PNG and PDF output need matplotlib (pip install 'specc[train]' or pip install matplotlib);"
        " SVG and DOT output work without it\n"
    )
    assert not (tmp_path / "net.png").exists()
    _draw(tmp_path, spec)
    _draw(tmp_path, spec, name="net.dot")


def test_options_come_from_the_op_fields():
    """Required fields and those off their default; init fields and defaults left out."""
    from specc.draw.labels import option_text
    from specc.layers import OPS

    conv = OPS["conv"].model_validate({"filters": 8, "kernel": [3, 1], "stride": 2, "init": "xavier"})
    assert option_text(conv) == "kernel=3x1 stride=2 filters=8"
    pool = OPS["max_pool"].model_validate({"kernel": 2})
    assert option_text(pool) == "kernel=2"
    assert option_text(OPS["elu"].model_validate({"alpha": 0.5})) == "alpha=0.5"


def test_random_dags_never_overlap_or_cross_boxes():
    """The layout's promises on random DAGs with long edges and wide/narrow boxes."""
    rng = random.Random(7)
    for _ in range(25):
        n = rng.randint(2, 18)
        names = [f"n{i}" for i in range(n)]
        edges = [(names[i], names[j]) for j in range(1, n) for i in rng.sample(range(j), min(j, rng.randint(1, 3)))]
        sizes = {name: (rng.uniform(20, 220), rng.uniform(20, 70)) for name in names}
        for rankdir in ("TB", "LR"):
            layout = layered_layout(names, sizes, edges, rankdir)
            rects = list(layout.rects.values())
            assert all(not a.overlaps(b) for i, a in enumerate(rects) for b in rects[i + 1 :])
            assert sorted((r.src, r.dst) for r in layout.routes) == sorted(set(edges))
            for route in layout.routes:
                assert all(not r.contains(x, y, inset=0.5) for x, y in sample(route) for r in rects)
