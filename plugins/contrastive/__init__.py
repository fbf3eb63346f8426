"""Contrastive loss (Chopra, Hadsell, LeCun CVPR 2005; Hadsell, Chopra, LeCun CVPR 2006).

For a pair at L2 distance d with y = 1 (same person) or 0: ``y * d^2 / 2 + (1 - y) *
max(0, m - d)^2 / 2`` — pull matching pairs together, push others out to the margin. This
margin form is Hadsell et al.'s (2006); Chopra et al. (2005) wrote the impostor term as an
exponential of an L1 energy. Per pair it is the formula of DeepID2's L2 verification term;
what differs is around it — here the margin is fixed (DeepID2 re-sets it from recent pairs),
there is no identification signal, and features may be normalised. DeepID2's term lives in
its own plugin, on purpose: each follows its own paper.

Pairs are formed inside a P x K batch (facebench.mining). A batch of 32 x 4 has 192 matching
pairs against 7,936 non-matching ones, so ``pairs=weighted`` (default) averages each kind
separately and gives both halves equal weight — what a balanced sample of pairs gives in
expectation, without sampling noise; ``pairs=balanced`` takes that sample, ``pairs=all``
averages over every pair.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from facebench.mining import PAIRINGS, batch_pairs, pair_distance
from facebench.validation import one_of, ranged
from facebench.components import FEATURE, BuildContext, Loss, LossOutput
from facebench.config import ConfigError
from facebench.hookspecs import hookimpl

#: How the pairs of a batch are reduced: facebench.mining's pairings, or ``weighted``.
REDUCTIONS = ("weighted", *PAIRINGS)


def pair_losses(d: torch.Tensor, same: torch.Tensor, margin: float) -> torch.Tensor:
    """Chopra/Hadsell loss of each pair from its (unsquared) distance ``d`` and ``same`` (bool)."""
    return torch.where(same, 0.5 * d.pow(2), 0.5 * F.relu(margin - d).pow(2))


@dataclass
class ContrastiveConfig:
    """Chopra/Hadsell contrastive loss on the L2 distance of backbone features.

    margin: m, the distance non-matching pairs are pushed to. The papers give no value for
      faces (it is relative to the feature's scale); 1.0.
    normalize: L2-normalise features before measuring distances, so distances lie in [0, 2]
      and m = 1 is half the sphere's diameter. Off by default: the papers use the raw output.
      The contrastive preset turns it on (synthetic default, DeepID2 net, cosine verifier:
      92.1% with it, 77.9% without).
    pairs: weighted (default: every pair of the P x K batch, matching and non-matching pairs
      averaged separately and each half weighted equally), balanced (every matching pair and as
      many random non-matching ones, each counted once: facebench.mining's pairing, as DeepID2's
      verification signal uses it) or all (mean over every pair). ``weighted`` was called
      ``balanced`` before facebench.mining gave that word one meaning.
    weight: factor on the term.
    """

    name: str = "contrastive"
    margin: float = ranged(1.0, gt=0)
    normalize: bool = False
    pairs: str = one_of("weighted", *REDUCTIONS)
    weight: float = ranged(1.0, ge=0)


class ContrastiveLoss(Loss):
    batch = "pk"

    def __init__(self, margin: float = 1.0, normalize: bool = False, pairs: str = "weighted", weight: float = 1.0) -> None:
        super().__init__()
        if pairs not in REDUCTIONS:
            raise ConfigError(f"loss.pairs={pairs!r}: use one of {', '.join(REDUCTIONS)}")
        self.margin = margin
        self.normalize = normalize
        self.pairs = pairs
        self.weight = weight

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        feature = outputs[FEATURE].float()
        if self.normalize:
            feature = F.normalize(feature, dim=1)
        i, j, same = batch_pairs(labels, "all" if self.pairs == "weighted" else self.pairs)
        d = pair_distance(feature[i], feature[j], "l2")
        per_pair = pair_losses(d, same, self.margin)
        if self.pairs != "weighted":
            loss = per_pair.mean()
        else:
            pos = per_pair[same].mean() if same.any() else per_pair.sum() * 0.0
            neg = per_pair[~same].mean() if (~same).any() else per_pair.sum() * 0.0
            loss = 0.5 * (pos + neg)
        with torch.no_grad():
            metrics = {
                "d_same": d[same].mean().item() if same.any() else float("nan"),
                "d_diff": d[~same].mean().item() if (~same).any() else float("nan"),
                "active_negatives": (d[~same] < self.margin).float().mean().item() if (~same).any() else float("nan"),
            }
        return LossOutput({"contrastive": self.weight * loss}, metrics)


def build_contrastive(cfg: ContrastiveConfig, ctx: BuildContext) -> ContrastiveLoss:
    return ContrastiveLoss(cfg.margin, cfg.normalize, cfg.pairs, cfg.weight)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("loss", "contrastive", build_contrastive, ContrastiveConfig,
                 search_space={"margin": "interval(0.3, 1.6)"})
