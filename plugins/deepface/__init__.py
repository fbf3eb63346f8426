"""DeepFace (Taigman, Yang, Ranzato, Wolf, CVPR 2014): a ConvNet with locally connected upper layers.

C1 conv 32@11x11 -> M2 max-pool 3x3 stride 2 -> C3 conv 16@9x9 -> L4 16@9x9 locally connected
-> L5 16@7x7 stride 2 LC -> L6 16@5x5 LC -> F7 fully connected (4096, dropout) = the feature;
ReLU after every layer. The paper's F8 softmax over identities is the loss (``loss=softmax``),
so it is thrown away at test time like every classifier here.

Two registered sizes:

- ``deepface`` — CPU-sized: DeepID2's 55x47 RGB input (so the two see the same faces), kernels
  5/3/3/3/3 (the paper's scaled down with the input), F7 of 512 units. Maps: C1 51x43,
  M2 25x21, C3 23x19, L4 21x17, L5 10x8, L6 8x6; a training step costs about what DeepID2's
  net costs.
- ``deepface_paper`` — the paper's 152x152x3 input, kernels 11/9/9/7/5 and F7 of 4096 units.
  Maps: C1 142, M2 71, C3 63, L4 55, L5 25, L6 21 (the paper's Fig. 2 sizes; M2 rounds up,
  which is what gives 71 from 142), about 100M weights before the softmax.

The paper's input is 3D-frontalised; ours is what the dataset gives (2D-aligned crops).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from facebench.components import FEATURE, Backbone, BuildContext
from facebench.config import ConfigError
from facebench.hookspecs import hookimpl
from facebench.nn.local import LocallyConnected2d, conv_output_size

LAYERS = ("C1", "M2", "C3", "L4", "L5", "L6")
#: Stride of each layer of LAYERS (M2 pools 3x3; the others' kernels come from the config).
STRIDES = (1, 2, 1, 1, 2, 1)
POOL = 3


@dataclass
class DeepFaceConfig:
    """DeepFace-style net, CPU-sized by default (see the module docstring for both sizes).

    channels, height, width: the input (1 grey, 3 RGB); the paper: 3 x 152 x 152.
    widths: output channels of C1, C3, L4, L5, L6; the paper: 32, 16, 16, 16, 16.
    kernels: kernel sizes of C1, C3, L4, L5, L6; the paper: 11, 9, 9, 7, 5.
    feature_dim: F7 units, the feature; the paper: 4096.
    dropout: on F7 during training (the paper applies dropout to F7 only; its rate is not
      given there, 0.5 is the usual one).
    """

    name: str = "deepface"
    channels: int = 3
    height: int = 55
    width: int = 47
    widths: list[int] = field(default_factory=lambda: [32, 16, 16, 16, 16])
    kernels: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 3])
    feature_dim: int = 512
    dropout: float = 0.5


@dataclass
class DeepFacePaperConfig(DeepFaceConfig):
    """DeepFace at the paper's sizes: 152x152x3 input, kernels 11/9/9/7/5, F7 of 4096 units."""

    name: str = "deepface_paper"
    height: int = 152
    width: int = 152
    kernels: list[int] = field(default_factory=lambda: [11, 9, 9, 7, 5])
    feature_dim: int = 4096


def _layer_kernels(kernels: list[int]) -> list[int]:
    """Kernel of every layer of LAYERS: the config's five with the 3x3 pool inserted as M2."""
    if len(kernels) != 5:
        raise ConfigError(f"backbone.kernels needs 5 sizes (C1, C3, L4, L5, L6), got {list(kernels)}")
    return [kernels[0], POOL, *kernels[1:]]


def _sizes(height: int, width: int, kernels: list[int]) -> list[tuple[int, int]]:
    """Output (h, w) of each layer of LAYERS, up to and including the first empty map."""
    sizes, h, w = [], height, width
    for kernel, stride, layer in zip(_layer_kernels(kernels), STRIDES, LAYERS):
        if layer == "M2":  # ceil mode, as nn.MaxPool2d(ceil_mode=True) with no padding
            h, w = -(-(h - kernel) // stride) + 1, -(-(w - kernel) // stride) + 1
        else:
            h, w = conv_output_size((h, w), kernel, stride)
        sizes.append((h, w))
        if h < 1 or w < 1:
            break
    return sizes


def _smallest_side(kernels: list[int]) -> int:
    """The smallest square input side that leaves every map at least 1 pixel wide."""
    side = 1
    while len(_sizes(side, side, kernels)) < len(LAYERS) or min(_sizes(side, side, kernels)[-1]) < 1:
        side += 1
    return side


def deepface_shapes(height: int, width: int, kernels: list[int]) -> dict[str, tuple[int, int]]:
    """(h, w) of every map from C1 to L6, or a ConfigError that names the layer that runs out."""
    sizes = _sizes(height, width, kernels)
    if len(sizes) < len(LAYERS) or min(sizes[-1]) < 1:
        raise ConfigError(
            f"DeepFace backbone: a {height}x{width} input is too small for kernels {list(kernels)}: the "
            f"{LAYERS[len(sizes) - 1]} map would be empty ({sizes[-1][0]}x{sizes[-1][1]}). Use backbone.height and "
            f"backbone.width >= {_smallest_side(kernels)} or smaller backbone.kernels."
        )
    return dict(zip(LAYERS, sizes))


class DeepFaceNet(Backbone):
    """C1 -> M2 -> C3 -> L4 -> L5 -> L6 -> F7, ReLU after each; ``feature`` is F7 after ReLU and dropout."""

    def __init__(self, cfg: DeepFaceConfig) -> None:
        super().__init__()
        if len(cfg.widths) != 5:
            raise ConfigError(f"backbone.widths needs 5 channel counts (C1, C3, L4, L5, L6), got {list(cfg.widths)}")
        self.input_shape = (cfg.channels, cfg.height, cfg.width)
        self.feature_dim = cfg.feature_dim
        self.shapes = deepface_shapes(cfg.height, cfg.width, cfg.kernels)
        c1, c3, l4, l5, l6 = cfg.widths
        k1, k3, k4, k5, k6 = cfg.kernels
        relu = nn.ReLU(inplace=True)
        self.body = nn.Sequential(
            nn.Conv2d(cfg.channels, c1, k1), relu,
            nn.MaxPool2d(POOL, stride=2, ceil_mode=True),
            nn.Conv2d(c1, c3, k3), relu,
            LocallyConnected2d(c3, l4, self.shapes["C3"], k4), relu,
            LocallyConnected2d(l4, l5, self.shapes["L4"], k5, stride=2), relu,
            LocallyConnected2d(l5, l6, self.shapes["L5"], k6), relu,
            nn.Flatten(),
        )  # fmt: skip
        h, w = self.shapes["L6"]
        self.f7 = nn.Sequential(nn.Linear(l6 * h * w, cfg.feature_dim), relu, nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # Channels-last memory: PyTorch's CPU max-pool is several times slower on NCHW tensors
        # (measured here: the 3x3 M2 pool took a quarter of a training step), and the locally
        # connected layers gather their patches from a channels-last view anyway.
        return {FEATURE: self.f7(self.body(x.contiguous(memory_format=torch.channels_last)))}


def build_deepface(cfg: DeepFaceConfig, ctx: BuildContext) -> DeepFaceNet:
    return DeepFaceNet(cfg)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("backbone", "deepface", build_deepface, DeepFaceConfig)
    registry.add("backbone", "deepface_paper", build_deepface, DeepFacePaperConfig)
