"""DeepID2+ (Sun, Wang, Tang, CVPR 2015): a wider DeepID2 net with supervision at every stage.

- Net (backbone ``deepid2plus``): DeepID2's layout with 128 feature maps in each conv layer and a
  512-d DeepID layer; a 512-d fully connected branch after each of the first three conv/pool
  stages ("stage1".."stage3", plugins/deepid_net.py) — with the top feature, the paper's four
  supervised stages. Only the top feature is used at test time.
- Signal (loss ``deepid2plus``): DeepID2's joint identification-verification loss applied to the
  top feature and to each side output, each with its own softmax head, verification parameters
  and margin. The paper adds the signals without stating weights; ``side_weight`` (1) scales
  the three side losses.
- Sparsity (``feature_report``): the paper finds about half the neurons active per image and
  each neuron active on about half the images; every run's record carries the figures, and
  ``python -m facebench.analyze`` measures it with the paper's other findings.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import nn

from facebench.components import FEATURE, BuildContext, Loss, LossOutput
from facebench.hookspecs import hookimpl
from facebench_plugins.analyses.sparsity import sparsity_report
from facebench_plugins.deepid_net import DeepIDNet, DeepIDNetConfig
from facebench_plugins.deepid2.loss import DeepID2Loss, DeepID2LossConfig, JointSignalConfig, MarginConfig

SIDES = ("stage1", "stage2", "stage3")


@dataclass
class DeepID2PlusNetConfig(DeepIDNetConfig):
    """DeepID2+'s net: DeepIDNetConfig with 128 maps per conv layer, a 512-d feature and 512-d
    side branches (the paper's sizes)."""

    name: str = "deepid2plus"
    widths: list[int] = field(default_factory=lambda: [128, 128, 128, 128])
    feature_dim: int = 512
    side_dim: int = 512


class DeepID2PlusNet(DeepIDNet):
    """DeepIDNet with DeepID2+'s sparsity report on its test features."""

    def feature_report(self, features: np.ndarray) -> dict[str, float | int | bool]:
        return sparsity_report(features, self.feature_dim)


@dataclass
class DeepID2PlusLossConfig(JointSignalConfig):
    """DeepID2's joint signal (fields of JointSignalConfig, plugins/deepid2/loss.py) on the top
    feature and on each side output.

    side_dim: the side outputs' size (the backbone's side_dim; 512 in the paper).
    side_weight: factor on each side output's loss (the paper gives none: 1).
    """

    name: str = "deepid2plus"
    side_dim: int = 512
    side_weight: float = 1.0


class DeepID2PlusLoss(Loss):
    """One DeepID2 loss per supervised output; terms and metrics prefixed with the output name."""

    batch = "pk"

    def __init__(self, feature_dim: int, num_classes: int, cfg: DeepID2PlusLossConfig) -> None:
        super().__init__()
        shared = {f.name: getattr(cfg, f.name) for f in fields(JointSignalConfig)}
        shared["margin"] = MarginConfig(cfg.margin.mode, cfg.margin.initial, cfg.margin.every)
        signal = DeepID2LossConfig(**shared)
        self.side_weight = cfg.side_weight
        self.signals = nn.ModuleDict({"top": DeepID2Loss(feature_dim, num_classes, signal)})
        for side in SIDES:
            self.signals[side] = DeepID2Loss(cfg.side_dim, num_classes, signal)

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        terms: dict[str, torch.Tensor] = {}
        metrics: dict[str, float] = {}
        for name, signal in self.signals.items():
            key = FEATURE if name == "top" else name
            if key not in outputs:
                raise KeyError(f"loss deepid2plus needs the backbone output {key!r} (use backbone=deepid2plus, side_dim > 0)")
            out = signal({FEATURE: outputs[key]}, labels)
            weight = 1.0 if name == "top" else self.side_weight
            terms.update({f"{name}_{k}": weight * v for k, v in out.terms.items()})
            metrics.update({f"{name}_{k}": v for k, v in out.metrics.items()})
        return LossOutput(terms, metrics)


def build_deepid2plus_net(cfg: DeepID2PlusNetConfig, ctx: BuildContext) -> DeepID2PlusNet:
    return DeepID2PlusNet(cfg)


def build_deepid2plus_loss(cfg: DeepID2PlusLossConfig, ctx: BuildContext) -> DeepID2PlusLoss:
    return DeepID2PlusLoss(ctx.feature_dim, ctx.num_classes, cfg)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("backbone", "deepid2plus", build_deepid2plus_net, DeepID2PlusNetConfig)
    registry.add("loss", "deepid2plus", build_deepid2plus_loss, DeepID2PlusLossConfig,
                 search_space={"lambda_": "tag(log, interval(0.003, 1.0))"})
