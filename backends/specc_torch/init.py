"""Weight initialisation named by a conv/linear layer's `init` field, seeded and portable.

- `he` (the default; Caffe's "msra" filler): N(0, 2 / ((1 + a²) · fan_in)), zero bias. fan_in
  keeps the forward signal's variance constant through the ReLUs (He et al. 2015), which is
  what lets a 9-layer plain network like ALL-CNN-C start learning; a = the layer's leaky_relu
  slope when its fused activation is leaky_relu, else 0 (ReLU — also for layers without an
  activation, as Caffe's msra filler does).
- `xavier`: Glorot & Bengio's *uniform* rule, U(±sqrt(6 / (fan_in + fan_out))), as
  `torch.nn.init.xavier_uniform_` with gain 1 (Caffe's "xavier" filler differs: it uses fan_in
  only), zero bias.
- `gaussian`: N(0, init_std), zero bias — Caffe's gaussian filler.
- `torch`: what PyTorch's own `reset_parameters` draws — kaiming_uniform_(a=√5) reduces to
  U(±1/sqrt(fan_in)) for the weight, and the bias gets U(±1/sqrt(fan_in)) too.

Every draw comes from a private `torch.Generator`, layer by layer in spec order, weight before
bias, so the global RNG is never touched. The functions above `INIT_FUNCTIONS` are copied
verbatim into generated standalone files, so they use nothing but torch.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fill_(tensor: torch.Tensor, generator: torch.Generator, *, std: float = 0.0, bound: float = 0.0) -> None:
    """Fill with N(0, std) (std > 0) or else U(-bound, bound), drawn in float64 on the CPU.

    float32 `normal_` on the CPU picks a vectorised kernel by CPU capability, and the AVX2 and
    scalar kernels give different bits for the same seed (measured); the float64 kernel is the
    same everywhere, so rounding its draw gives the same weights on every machine and device.
    """
    draw = torch.empty(tensor.shape, dtype=torch.float64)
    if std > 0:
        draw.normal_(0.0, std, generator=generator)
    else:
        draw.uniform_(-bound, bound, generator=generator)
    tensor.copy_(draw)


@torch.no_grad()
def init_he_(weight: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator, slope: float = 0.0) -> None:
    """He (Caffe "msra"): N(0, 2 / ((1 + slope²) · fan_in)); zero bias."""
    fan_in = weight[0].numel()
    fill_(weight, generator, std=(2.0 / ((1.0 + slope**2) * fan_in)) ** 0.5)
    if bias is not None:
        bias.zero_()


@torch.no_grad()
def init_xavier_(weight: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator) -> None:
    """Glorot uniform: U(±sqrt(6 / (fan_in + fan_out))); zero bias."""
    fan_in, fan_out = weight[0].numel(), weight.shape[0] * weight[0][0].numel()
    fill_(weight, generator, bound=(6.0 / (fan_in + fan_out)) ** 0.5)
    if bias is not None:
        bias.zero_()


@torch.no_grad()
def init_gaussian_(weight: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator, std: float) -> None:
    """Caffe's gaussian filler: N(0, std); zero bias."""
    fill_(weight, generator, std=std)
    if bias is not None:
        bias.zero_()


@torch.no_grad()
def init_torch_default_(weight: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator) -> None:
    """PyTorch's reset_parameters for Conv2d/Linear: U(±1/sqrt(fan_in)) for weight and bias."""
    bound = 1.0 / weight[0].numel() ** 0.5
    fill_(weight, generator, bound=bound)
    if bias is not None:
        fill_(bias, generator, bound=bound)


INIT_FUNCTIONS = {
    "he": init_he_,
    "xavier": init_xavier_,
    "gaussian": init_gaussian_,
    "torch": init_torch_default_,
}


def apply_rule(module: nn.Module, rule: tuple[str, dict], generator: torch.Generator) -> None:
    """Initialise a layer's submodule by its op's `init_rule()` (see `specc.opbase`)."""
    name, kwargs = rule
    if name in INIT_FUNCTIONS:
        INIT_FUNCTIONS[name](module.weight, getattr(module, "bias", None), generator, **kwargs)
    elif name == "norm":
        module.reset_parameters()  # type: ignore[operator]  # scale 1, shift 0, fresh running statistics
    elif name == "constant":
        with torch.no_grad():
            for tensor in module.parameters():
                tensor.fill_(kwargs["value"])
    else:
        raise ValueError(f"unknown init rule {name!r}")


def rule_source(attr: str, rule: tuple[str, dict]) -> str:
    """The generated code's statement for `apply_rule` on the submodule `self.<attr>`."""
    name, kwargs = rule
    if name in INIT_FUNCTIONS:
        args = [f"self.{attr}.weight", f"self.{attr}.bias", "g"]  # torch's Conv2d/Linear: None without bias
        args += [f"{k}={v!r}" for k, v in kwargs.items()]
        return f"{INIT_FUNCTIONS[name].__name__}({', '.join(args)})"
    if name == "norm":
        return f"self.{attr}.reset_parameters()"
    if name == "constant":
        return f"torch.nn.init.constant_(self.{attr}.weight, {kwargs['value']!r})"
    raise ValueError(f"unknown init rule {name!r}")


def make_generator(seed: int | None) -> torch.Generator:
    """A private CPU generator; `None` seeds it from the OS (nondeterministic)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
