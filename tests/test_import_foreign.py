"""Foreign models: hand-written PyTorch modules (a ResNet-18, a MobileNetV2, SE blocks, a
Pad+Conv pair, a flatten written as `x.view(x.size(0), -1)`, an upsampling decoder) exported
by PyTorch's own exporters — TorchScript (`dynamo=False`), dynamo (`dynamo=True`) and
`torch.export` — then imported. Oracles: onnxruntime on the source ONNX; specc_torch.build
with the imported checkpoint and onnxruntime on specc's re-emitted ONNX must agree with it
(max |a - b| / max |source| <= 1e-5), and the weight count equals what the source stores.
Small: narrow networks, batch 1, 32x32 inputs."""

from __future__ import annotations

import importlib.util
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import specc
import specc_torch
from specc_onnx import emit, to_bytes
from specc_onnx.importer import import_model

CPU = ["CPUExecutionProvider"]
TOLERANCE = 1e-5
HAS_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None
NO_ONNXSCRIPT = "the dynamo exporter needs onnxscript (pip install onnxscript; not a dependency of specc)"


# -- the models, written by hand --------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + skip)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 structure at width 8."""

    def __init__(self, w: int = 8, classes: int = 10):
        super().__init__()
        self.conv1, self.bn1, self.relu = nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [w, 2 * w, 4 * w, 8 * w]
        stages, cin = [], w
        for i, cout in enumerate(widths):
            stages.append(nn.Sequential(Block(cin, cout, 1 if i == 0 else 2), Block(cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8 * w, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_skip = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )  # fmt: skip

    def forward(self, x):
        return x + self.conv(x) if self.use_skip else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 structure, narrowed: a few inverted residuals of each kind."""

    def __init__(self, classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True))
        ]
        for cin, cout, stride, expand in ((8, 8, 1, 1), (8, 12, 2, 6), (12, 12, 1, 6), (12, 16, 2, 6)):
            layers.append(InvertedResidual(cin, cout, stride, expand))
        layers.append(nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4):
        super().__init__()
        self.pool, self.fc1, self.fc2 = nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))


class SENet(nn.Module):
    """Conv + SiLU stages, each gated by squeeze-and-excitation, a linear head."""

    def __init__(self):
        super().__init__()
        self.stem, self.act = nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU()
        self.se1, self.conv2, self.se2 = SqueezeExcite(16), nn.Conv2d(16, 24, 3, 2, 1), SqueezeExcite(24)
        self.head = nn.Linear(24, 5)

    def forward(self, x):
        x = self.se2(self.act(self.conv2(self.se1(self.act(self.stem(x))))))
        return self.head(x.mean((2, 3)))


class PadConv(nn.Module):
    """F.pad before a conv: symmetric (merged into the conv) and asymmetric (a pad layer);
    then a flatten written as x.view(x.size(0), -1)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 2, 2)
        self.fc = nn.Linear(8 * 16 * 16, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(nn.functional.pad(x, (1, 1, 1, 1))))  # == Conv2d(padding=1)
        x = self.conv2(nn.functional.pad(x, (0, 1, 0, 1)))  # TF-style "same": no conv can say it
        return self.fc(x.view(x.size(0), -1))


class Decoder(nn.Module):
    """Upsampling both ways PyTorch exports as Resize."""

    def __init__(self):
        super().__init__()
        self.down, self.mid = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, padding=1)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.up1(torch.relu(self.mid(torch.relu(self.down(x)))))
        x = nn.functional.interpolate(x, size=(40, 40), mode="bilinear", align_corners=False)
        return self.out(x)


MODELS = {
    "resnet18": ResNet18,
    "mobilenet_v2": MobileNetV2,
    "se_blocks": SENet,
    "pad_conv_view": PadConv,
    "decoder": Decoder,
}


def _model(key: str) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[key]()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # batch-norm statistics away from their defaults, so they matter
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)  # type: ignore[union-attr]
                module.running_var.uniform_(0.5, 2.0, generator=generator)  # type: ignore[union-attr]
                module.weight.uniform_(0.5, 1.5, generator=generator)
    return model.eval()


# -- the exporters ----------------------------------------------------------------------------
def _export(model: nn.Module, x: torch.Tensor, exporter: str) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            buffer = io.BytesIO()
            torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17)  # type: ignore[arg-type]
            return buffer.getvalue()
        source = torch.export.export(model, (x,)) if exporter == "torch.export" else model
        program = torch.onnx.export(source, (x,), dynamo=True, opset_version=18, verbose=False)
        assert program is not None
        return program.model_proto.SerializeToString()


def _stored_floats(data: bytes) -> int:
    model = onnx.load_from_string(data)
    floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    return sum(int(np.prod(t.dims)) for t in floats if len(t.dims) >= 1 and int(np.prod(t.dims)) > 1)


def _check(data: bytes, x: torch.Tensor) -> specc.Graph:
    source = ort.InferenceSession(data, providers=CPU)
    want = np.asarray(source.run(None, {source.get_inputs()[0].name: x.numpy()})[0])
    result = import_model(data)
    graph, weights = result.graph, result.weights
    module = specc_torch.build(graph).eval()
    loaded = module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=False)
    assert not loaded.unexpected_keys and all(k.endswith("num_batches_tracked") for k in loaded.missing_keys)
    with torch.no_grad():
        built = module(x).numpy()
    session = ort.InferenceSession(to_bytes(emit(graph, weights)), providers=CPU)
    again = np.asarray(session.run(None, {"input": x.numpy()})[0])
    scale = float(np.abs(want).max())
    assert scale > 0
    for got in (built, again):
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) / scale <= TOLERANCE
    assert specc.check(graph).report.total_params == _stored_floats(data) == sum(a.size for a in weights.values())
    return graph


@pytest.mark.parametrize("key", MODELS)
def test_torchscript_exports_import_and_compute_the_same(key):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    graph = _check(_export(_model(key), x, "torchscript"), x)
    types = [n.type for n in graph.nodes]
    if key == "pad_conv_view":  # the symmetric pad went into conv1, the other stayed a layer
        assert types == ["conv", "pad", "conv", "flatten", "linear"] and graph.node("conv1").op.padding == "same"  # type: ignore[attr-defined]
    if key == "decoder":
        ups = [n.op.params() for n in graph.nodes if n.type == "upsample"]
        assert [(u["mode"], u["scale"], u["size"]) for u in ups] == [("nearest", 2, None), ("bilinear", None, 40)]
    if key == "resnet18":
        assert graph.node("layer1_0_conv1").type == "conv" and graph.node("fc").type == "linear"
        # the exporter folded every batch norm into its conv: the source module has more
        assert sum(p.numel() for p in _model(key).parameters()) > specc.check(graph).report.total_params


@pytest.mark.skipif(not HAS_ONNXSCRIPT, reason=NO_ONNXSCRIPT)
@pytest.mark.parametrize("exporter", ["dynamo", "torch.export"])
def test_dynamo_and_torch_export_import_and_compute_the_same(exporter):
    """One model each (the dynamo exporter takes seconds): ResNet-18 through dynamo, the SE
    network through torch.export; layer names come from the module paths either way."""
    key = "resnet18" if exporter == "dynamo" else "se_blocks"
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    graph = _check(_export(_model(key), x, exporter), x)
    names = {n.name for n in graph.nodes}
    assert ({"conv1", "layer1_0_conv1", "layer4_1_conv2", "fc"} if key == "resnet18" else {"stem", "head"}) <= names


def test_from_torch_keeps_batch_norm_and_the_modules_parameter_count():
    """specc's own export keeps BatchNormalization (PRESERVE on an eval module), so the spec
    has the module's batch norms and exactly its parameters, and computes the same."""
    model, x = _model("resnet18"), torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    graph, weights = specc.from_torch(model, x)
    assert sum(n.type == "batch_norm" for n in graph.nodes) == sum(
        isinstance(m, nn.BatchNorm2d) for m in model.modules()
    )
    assert specc.check(graph).report.total_params == sum(p.numel() for p in model.parameters())
    module = specc_torch.build(graph).eval()
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=False)
    with torch.no_grad():
        want, got = model(x), module(x)
    assert float((got - want).abs().max()) / float(want.abs().max()) <= TOLERANCE
