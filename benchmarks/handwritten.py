"""The baselines the benchmarks measure specc against: ALL-CNN-C written by hand in plain
PyTorch, as a user would, and a helper that gives it the same weights as a specc model."""

from __future__ import annotations

from torch import nn


def handwritten_allcnn_c(classes: int = 10, *, inplace: bool = True) -> nn.Sequential:
    """ALL-CNN-C (Springenberg et al. 2015, Table 2). `inplace=False` keeps one out-of-place
    nn.ReLU module per activation, which Captum's module hooks need."""

    def conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), nn.ReLU(inplace=inplace)]

    return nn.Sequential(
        nn.Dropout(0.2),
        *conv(3, 96, 3),
        *conv(96, 96, 3),
        *conv(96, 96, 3, stride=2),
        nn.Dropout(0.5),
        *conv(96, 192, 3),
        *conv(192, 192, 3),
        *conv(192, 192, 3, stride=2),
        nn.Dropout(0.5),
        *conv(192, 192, 3, padding=0),
        *conv(192, 192, 1, padding=0),
        *conv(192, classes, 1, padding=0),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def same_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy parameters in order (both list them layer by layer, weight before bias)."""
    pairs = list(zip(source.state_dict().values(), target.state_dict().items()))
    if not (len(pairs) == len(target.state_dict()) == len(source.state_dict())):
        raise ValueError("the two networks have different numbers of tensors")
    if not all(value.shape == mine.shape for value, (_, mine) in pairs):
        raise ValueError("the two networks' tensors differ in shape")
    target.load_state_dict({key: value.clone() for value, (key, _) in pairs})
