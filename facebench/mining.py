"""Pairs and triplets from P x K batches, their distances, and the miners: the toolkit every
metric loss shares (built-in or a plugin's), so each loss is its formula on these pieces.

A P x K batch (P identities x K images) holds P K(K-1)/2 same pairs against many times more
different ones (32 x 4: 192 against 7,936). Words mean one thing here:

- a *pairing* says which unordered pairs (i < j) a pair loss sees: ``all`` of them, or
  ``balanced``: every same pair plus as many different pairs drawn uniformly without
  replacement (all of them when there are fewer), each pair counted once. The draw uses
  torch's global generator, which the trainer seeds and checkpoints, so resumed runs draw the
  same pairs.
- ``weighted`` (a reduction, not a pairing): all pairs, the same and the different ones
  averaged separately and given equal weight.
- distances are taken from differences, with a floor under the square root (its derivative is
  infinite at 0, and P x K batches repeat a small identity's images, so d = 0 happens).
- triplet miners return index vectors (anchor, positive, negative) into the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PAIRINGS = ("balanced", "all")
NORMS = ("l2", "l1", "cosine")
FALLBACKS = ("easiest", "hardest", "skip")


def same_identity(labels: torch.Tensor) -> torch.Tensor:
    """(N, N) bool: whether images i and j show one person (the diagonal included)."""
    return labels[:, None] == labels[None, :]


def positive_pairs(labels: torch.Tensor) -> torch.Tensor:
    """(N, N) bool: i and j are two different images of one person."""
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same_identity(labels) & ~eye


def all_pairs(n: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Index vectors (i, j) of every unordered pair i < j of a batch of ``n``."""
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i, j


def batch_pairs(labels: torch.Tensor, pairing: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(i, j, same): index vectors of the chosen pairs (i < j) and whether each is a same pair."""
    i, j = all_pairs(len(labels), labels.device)
    same = labels[i] == labels[j]
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing={pairing!r}: use one of {', '.join(PAIRINGS)}")
    if pairing == "all":
        return i, j, same
    positives = torch.nonzero(same).flatten()
    negatives = torch.nonzero(~same).flatten()
    count = min(len(positives), len(negatives))
    drawn = negatives[torch.randperm(len(negatives), device="cpu")[:count].to(labels.device)]
    keep = torch.cat([positives, drawn])
    return i[keep], j[keep], same[keep]


def pair_distance(fi: torch.Tensor, fj: torch.Tensor, norm: str) -> torch.Tensor:
    """Distances of aligned rows of ``fi`` and ``fj`` (any leading axes, features last), in ``norm``.

    The L2 norm gets a floor under its square root: its derivative is infinite at 0, and P x K
    batches repeat the images of identities with fewer than K images, so d = 0 happens. The
    cosine norm has no distance: it reports 1 - cos, for the margin-free statistics only.
    """
    diff = fi - fj
    if norm == "l2":
        return diff.pow(2).sum(-1).clamp(min=1e-12).sqrt()
    if norm == "l1":
        return diff.abs().sum(-1)
    return 1.0 - F.cosine_similarity(fi, fj, dim=-1, eps=1e-8)


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
        raise ValueError(f"fallback={fallback!r}: use one of {', '.join(FALLBACKS)}")
    same = same_identity(labels)
    a, p = torch.nonzero(positive_pairs(labels), as_tuple=True)
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
    valid = positive_pairs(labels)[:, :, None] & ~same_identity(labels)[:, None, :]
    return torch.nonzero(valid, as_tuple=True)


def batch_hard(d: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per anchor, its farthest positive and closest negative (Hermans, Beyer, Leibe 2017)."""
    pos, neg = positive_pairs(labels), ~same_identity(labels)
    inf = torch.finfo(d.dtype).max
    keep = pos.any(1) & neg.any(1)
    a = torch.arange(len(labels), device=labels.device)
    p = torch.where(pos, d, -inf).argmax(1)
    n = torch.where(neg, d, inf).argmin(1)
    return a[keep], p[keep], n[keep]
