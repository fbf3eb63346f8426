"""A centre-pulling softmax: cross-entropy plus a pull of each feature to its class mean."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facebench.components import FEATURE, Loss, LossOutput
from facebench.hookspecs import hookimpl


@dataclass
class PullConfig:
    name: str = "pull"
    pull_weight: float = 0.01


class PullLoss(Loss):
    def __init__(self, dim, n, pull_weight):
        super().__init__()
        self.head = nn.Linear(dim, n)
        self.pull_weight = pull_weight

    def forward(self, outputs, labels):
        f = outputs[FEATURE]
        ce = F.cross_entropy(self.head(f), labels)
        centres = torch.zeros(int(labels.max()) + 1, f.shape[1]).index_add_(0, labels, f)
        counts = torch.bincount(labels).clamp(min=1).unsqueeze(1)
        pull = ((f - (centres / counts)[labels]) ** 2).sum(1).mean()
        return LossOutput({"identification": ce, "pull": self.pull_weight * pull}, {"pull_weight": self.pull_weight})


@hookimpl
def facebench_register(registry):
    registry.add("loss", "pull", lambda cfg, ctx: PullLoss(ctx.feature_dim, ctx.num_classes, cfg.pull_weight), PullConfig)
