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

from facebench.validation import one_of, ranged
from facebench.components import FEATURE, BuildContext, Loss, LossOutput
from facebench.config import ConfigError
from facebench.hookspecs import hookimpl

MININGS = ("semihard", "batch_hard", "batch_all")
FALLBACKS = ("easiest", "hardest", "skip")


def squared_distances(e: torch.Tensor) -> torch.Tensor:
    """(N, N) squared Euclidean distances, from differences (exact, smooth; N is a batch)."""
    return (e[:, None, :] - e[None, :, :]).pow(2).sum(-1)


def semihard_negatives(d: torch.Tensor, labels: torch.Tensor, alpha: float, fallback: str = "easiest") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triplets (a, p, n) for every anchor-positive pair with its hardest semi-hard negative.

    A semi-hard negative lies farther than the positive but inside the margin,
    ``d(a, p) < d(a, n) < d(a, p) + alpha`` (FaceNet Sec. 3.2); the closest one is taken.
    Where a pair has none, ``fallback`` decides: ``easiest`` (default) takes the farthest
    negative — FaceNet warns that the hardest negatives early in training collapse the model,
    and the farthest one is the reading of the widely used TensorFlow semi-hard loss; with any
    negative beyond the margin the triplet then contributes nothing. ``hardest`` takes the
    closest negative; ``skip`` drops the pair.
    """
    if fallback not in FALLBACKS:
        raise ConfigError(f"loss.fallback={fallback!r}: use one of {', '.join(FALLBACKS)}")
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    a, p = torch.nonzero(same & ~eye, as_tuple=True)
    d_ap = d[a, p][:, None]
    d_an = d[a]  # (pairs, N)
    negative = ~same[a]
    semi = negative & (d_an > d_ap) & (d_an < d_ap + alpha)
    inf = torch.finfo(d.dtype).max
    closest_semi = torch.where(semi, d_an, inf).argmin(1)
    if fallback == "easiest":
        other = torch.where(negative, d_an, -inf).argmax(1)
    else:
        other = torch.where(negative, d_an, inf).argmin(1)
    has = semi.any(1)
    n = torch.where(has, closest_semi, other)
    keep = has if fallback == "skip" else negative.any(1)
    return a[keep], p[keep], n[keep]


def all_triplets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every valid (a, p, n) of the batch."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = (same & ~eye)[:, :, None] & ~same[:, None, :]
    return torch.nonzero(valid, as_tuple=True)


def batch_hard(d: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per anchor, its farthest positive and closest negative (Hermans, Beyer, Leibe 2017)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos, neg = same & ~eye, ~same
    inf = torch.finfo(d.dtype).max
    keep = pos.any(1) & neg.any(1)
    a = torch.arange(len(labels), device=labels.device)
    p = torch.where(pos, d, -inf).argmax(1)
    n = torch.where(neg, d, inf).argmin(1)
    return a[keep], p[keep], n[keep]


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
    registry.add("loss", "triplet", build_triplet, TripletConfig)
