"""ResNet-18 written by hand in plain torch.nn (torchvision's structure and state_dict names:
`conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`), for `specc import --torch`:

    specc import --torch examples/resnet18.py:resnet18 --input 3x224x224

`resnet18()` returns the network with random weights (seeded); load a checkpoint into it with
`model.load_state_dict(torch.load(...))` to import trained weights. `stem_stride=1` (`--arg
stem_stride=1`) leaves the downsampling of the stem to its max-pool alone (a variant to play
with; `specc transform --replace-pooling strided` folds the max-pool into either stem)."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm; a 1x1 strided projection when the shape changes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, width: int = 64, stem_stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stem_stride, 3, bias=False)  # (N, 64, 112, 112) at 224
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)  # (N, 64, 56, 56); 112x112 with stem_stride=1
        widths = [width, width * 2, width * 4, width * 8]
        self.layer1 = nn.Sequential(BasicBlock(width, widths[0]), BasicBlock(widths[0], widths[0]))
        self.layer2 = nn.Sequential(BasicBlock(widths[0], widths[1], 2), BasicBlock(widths[1], widths[1]))
        self.layer3 = nn.Sequential(BasicBlock(widths[1], widths[2], 2), BasicBlock(widths[2], widths[2]))
        self.layer4 = nn.Sequential(BasicBlock(widths[2], widths[3], 2), BasicBlock(widths[3], widths[3]))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)  # (N, 512)
        return self.fc(x)


def resnet18(num_classes: int = 1000, width: int = 64, stem_stride: int = 2) -> ResNet18:
    """A ResNet-18 with seeded random weights, in eval mode (torchvision's with the defaults)."""
    torch.manual_seed(0)
    return ResNet18(num_classes, width, stem_stride).eval()
