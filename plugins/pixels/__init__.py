"""Raw pixels as features: the sanity floor every learned method must beat."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from facebench.components import FEATURE, Backbone, BuildContext
from facebench.hookspecs import hookimpl


@dataclass
class PixelsConfig:
    """The face resized to height x width with `channels` (1: grey, 3: RGB), flattened."""

    name: str = "pixels"
    channels: int = 3
    height: int = 55
    width: int = 47


class PixelsBackbone(Backbone):
    trainable = False

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.input_shape = (channels, height, width)
        self.feature_dim = channels * height * width

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {FEATURE: x.flatten(1)}


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("backbone", "pixels", lambda c, ctx: PixelsBackbone(c.channels, c.height, c.width), PixelsConfig)
