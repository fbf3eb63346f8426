"""A third party's facebench plugin: a loss, a verifier and a `+method=pull` preset.

The loss is a centre-pulling softmax (cross-entropy plus a pull of each feature to its class's
mean in the batch); the verifier scores pairs by the negative angle between features.
"""
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from torch import nn

from facebench.components import FEATURE, Loss, LossOutput, Verifier
from facebench.hookspecs import hookimpl
from facebench.validation import ranged


@dataclass
class PullConfig:
    """pull_weight: factor on the pull to the class means (>= 0)."""

    name: str = "pull"
    pull_weight: float = ranged(0.01, ge=0)


class PullLoss(Loss):
    def __init__(self, dim: int, n: int, pull_weight: float) -> None:
        super().__init__()
        self.head = nn.Linear(dim, n)
        self.pull_weight = pull_weight

    def forward(self, outputs, labels):
        f = outputs[FEATURE]
        ce = F.cross_entropy(self.head(f), labels)
        n = int(labels.max()) + 1
        centres = f.new_zeros(n, f.shape[1]).index_add(0, labels, f)  # on the features' device
        counts = labels.bincount(minlength=n).clamp(min=1).unsqueeze(1).to(f.dtype)
        pull = ((f - (centres / counts)[labels]) ** 2).sum(1).mean()
        return LossOutput({"identification": ce, "pull": self.pull_weight * pull}, {"pull_weight": self.pull_weight})


@dataclass
class AngleConfig:
    name: str = "angle"


class AngleVerifier(Verifier):
    """Higher = more similar: minus the angle (radians) between two features."""

    @staticmethod
    def _unit(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def score(self, a, b):
        return -np.arccos(np.clip((self._unit(a) * self._unit(b)).sum(1), -1.0, 1.0))

    def score_matrix(self, a, b):
        return -np.arccos(np.clip(self._unit(a) @ self._unit(b).T, -1.0, 1.0))


@hookimpl
def facebench_register(registry):
    registry.add("loss", "pull", lambda cfg, ctx: PullLoss(ctx.feature_dim, ctx.num_classes, cfg.pull_weight), PullConfig)
    registry.add("verifier", "angle", lambda cfg, ctx: AngleVerifier(), AngleConfig)
    registry.add_presets(f"{__name__}.presets")
