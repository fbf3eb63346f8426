"""Identification signal: an n-way softmax head on the feature (DeepID, DeepFace)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facebench.validation import ranged
from facebench.components import FEATURE, BuildContext, Loss, LossOutput
from facebench.hookspecs import hookimpl


@dataclass
class SoftmaxConfig:
    """Cross-entropy over the training identities.

    weight: factor on the identification term. label_smoothing: 0 in the papers.
    """

    name: str = "softmax"
    weight: float = ranged(1.0, ge=0)
    label_smoothing: float = ranged(0.0, ge=0, lt=1)


class SoftmaxLoss(Loss):
    batch = "plain"

    def __init__(self, feature_dim: int, num_classes: int, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.head = nn.Linear(feature_dim, num_classes)
        self.weight = weight
        self.label_smoothing = label_smoothing

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        logits = self.head(outputs[FEATURE])
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(1) == labels).float().mean().item()
        return LossOutput({"identification": self.weight * ce}, {"train_accuracy": acc})


def build_softmax(cfg: SoftmaxConfig, ctx: BuildContext) -> SoftmaxLoss:
    return SoftmaxLoss(ctx.feature_dim, ctx.num_classes, cfg.weight, cfg.label_smoothing)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("loss", "softmax", build_softmax, SoftmaxConfig)
