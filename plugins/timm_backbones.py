"""Any timm image model as a backbone: the pooled trunk features, then a linear map to the feature.

timm is imported inside the factory only: importing timm costs seconds and registering the
plugin happens on every run, most of which never build a timm model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from facebench.components import FEATURE, Backbone, BuildContext
from facebench.config import ConfigError
from facebench.hookspecs import hookimpl


@dataclass
class TimmConfig:
    """A timm model (``timm.create_model(model, pretrained, num_classes=0, in_chans=channels)``).

    model: a timm model name (``python -c "import timm; print(timm.list_models())"``).
    pretrained: load timm's pretrained weights; needs network access or timm's local cache,
      and, for a benchmark under the no-outside-data regime, breaks that regime. Off.
    feature_dim: a linear layer maps the trunk's pooled features to this many (the test-time
      feature); None uses the pooled features as they are.
    channels, height, width: the input; default the project's aligned 112x96 crops, RGB.
    """

    name: str = "timm"
    model: str = "resnet18"
    pretrained: bool = False
    feature_dim: Optional[int] = 128
    channels: int = 3
    height: int = 112
    width: int = 96


class TimmBackbone(Backbone):
    """A timm trunk (classifier removed, global-pooled) and an optional linear to ``feature_dim``."""

    def __init__(self, trunk: nn.Module, input_shape: tuple[int, int, int], feature_dim: Optional[int]) -> None:
        super().__init__()
        self.trunk = trunk
        self.input_shape = input_shape
        width = int(trunk.num_features)
        self.embed = nn.Linear(width, feature_dim) if feature_dim else nn.Identity()
        self.feature_dim = feature_dim or width

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {FEATURE: self.embed(self.trunk(x))}


def build_timm(cfg: TimmConfig, ctx: BuildContext) -> TimmBackbone:
    import timm

    try:
        trunk = timm.create_model(cfg.model, pretrained=cfg.pretrained, num_classes=0, in_chans=cfg.channels)
    except RuntimeError as exc:  # timm's "Unknown model (...)"
        raise ConfigError(f"backbone.model={cfg.model!r}: {exc}") from exc
    return TimmBackbone(trunk, (cfg.channels, cfg.height, cfg.width), cfg.feature_dim)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("backbone", "timm", build_timm, TimmConfig)
