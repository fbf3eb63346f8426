"""FaceNet (Schroff, Kalenichenko, Philbin, CVPR 2015): the triplet loss on a unit-sphere embedding.

``max(0, ||a - p||^2 - ||a - n||^2 + alpha)`` on L2-normalised embeddings, triplets mined online
inside P x K batches. The embedding is the backbone's feature, normalised here: the FaceNet
preset sets the backbone's ``feature_dim`` to the paper's 128 rather than adding a projection
in the loss, because a projection owned by the loss would be thrown away at test time. The
verifier then sees the unnormalised feature; the cosine verifier normalises it, so its score
is ``1 - d^2 / 2`` of the embedding distance the loss trained (with ``features.flip=none``,
as the preset sets, to keep that exact).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from facebench.mining import FALLBACKS, all_triplets, batch_hard, semihard_negatives, squared_distances
from facebench.validation import one_of, ranged
from facebench.components import FEATURE, BuildContext, Loss, LossOutput
from facebench.config import ConfigError
from facebench.hookspecs import hookimpl

MININGS = ("semihard", "batch_hard", "batch_all")


@dataclass
class TripletConfig:
    """FaceNet's triplet loss on the L2-normalised backbone feature.

    alpha: the margin; 0.2 as in FaceNet.
    mining: semihard (FaceNet: every anchor-positive pair, each with its closest semi-hard
      negative), batch_hard (per anchor the farthest positive and closest negative, averaged
      over anchors; Hermans et al. 2017) or batch_all (every valid triplet, averaged over the
      active ones, i.e. those with a positive loss; Hermans et al.).
    fallback: semihard only — the negative for a pair without a semi-hard one: easiest
      (default: the farthest negative), hardest (the closest) or skip.
    """

    name: str = "triplet"
    alpha: float = ranged(0.2, ge=0)
    mining: str = one_of("semihard", *MININGS)
    fallback: str = one_of("easiest", *FALLBACKS)


class TripletLoss(Loss):
    """Triplet loss with online mining; the batch is P identities x K images."""

    batch = "pk"

    def __init__(self, alpha: float = 0.2, mining: str = "semihard", fallback: str = "easiest") -> None:
        super().__init__()
        if mining not in MININGS:
            raise ConfigError(f"loss.mining={mining!r}: use one of {', '.join(MININGS)}")
        if fallback not in FALLBACKS:
            raise ConfigError(f"loss.fallback={fallback!r}: use one of {', '.join(FALLBACKS)}")
        self.alpha = alpha
        self.mining = mining
        self.fallback = fallback

    def mine(self, d: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Indices (a, p, n) of the triplets this step trains on, chosen on detached distances."""
        if self.mining == "semihard":
            return semihard_negatives(d, labels, self.alpha, self.fallback)
        if self.mining == "batch_hard":
            return batch_hard(d, labels)
        return all_triplets(labels)

    def triplet_terms(self, embedding: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss on an already L2-normalised embedding, and its metrics."""
        d = squared_distances(embedding)
        a, p, n = self.mine(d.detach(), labels)
        if len(a) == 0:
            zero = embedding.sum() * 0.0
            return zero, {"active_triplets": 0.0, "d_ap": float("nan"), "d_an": float("nan")}
        d_ap, d_an = d[a, p], d[a, n]
        hinge = F.relu(d_ap - d_an + self.alpha)
        active = hinge > 0
        if self.mining == "batch_all":
            loss = hinge.sum() / active.sum().clamp(min=1)
        else:
            loss = hinge.mean()
        metrics = {
            "active_triplets": active.float().mean().item(),
            "d_ap": d_ap.detach().mean().item(),
            "d_an": d_an.detach().mean().item(),
        }
        return loss, metrics

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        embedding = F.normalize(outputs[FEATURE].float(), dim=1)
        loss, metrics = self.triplet_terms(embedding, labels)
        return LossOutput({"triplet": loss}, metrics)


def build_triplet(cfg: TripletConfig, ctx: BuildContext) -> TripletLoss:
    return TripletLoss(cfg.alpha, cfg.mining, cfg.fallback)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("loss", "triplet", build_triplet, TripletConfig, search_space={"alpha": "interval(0.05, 0.5)"})
