"""DeepID2's verification signal in its three forms (Sun et al. 2014, Eq. 2-4), per pair.

For a pair (fi, fj) with y = same person or not:

- ``l2`` (the paper's best): 0.5 * ||fi - fj||_2^2 if same, 0.5 * max(0, m - ||fi - fj||_2)^2 if
  not — the hinge acts on the unsquared distance, then is squared.
- ``l1``: the same with the L1 norm.
- ``cosine``: 0.5 * (y' - sigmoid(w * cos(fi, fj) + b))^2 with learnable w, b and y' in {0, 1}.

Distances come from ``facebench.mining.pair_distance``. Every function works on a leading "net" axis R (one row per ConvNet of an ensemble; R = 1 for
one net), so an ensemble's signals are computed in one batched call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from facebench.mining import NORMS

FORMS = NORMS


def margin_terms(distance: torch.Tensor, same: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """L1/L2 forms: 0.5 d^2 for same pairs, 0.5 max(0, m - d)^2 for different ones.

    ``distance`` (R, n), ``same`` (n,) bool, ``margin`` (R,). Returns (R, n) per-pair terms.
    """
    pull = 0.5 * distance.pow(2)
    push = 0.5 * F.relu(margin[:, None] - distance).pow(2)
    return torch.where(same[None, :], pull, push)


def cosine_terms(
    fi: torch.Tensor, fj: torch.Tensor, same: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine form: (R, n) terms 0.5 (y' - sigmoid(w cos + b))^2 and the (R, n) probabilities
    sigmoid(w cos + b) that the pair is the same person; ``scale`` = w and ``bias`` = b are (R,)."""
    cos = F.cosine_similarity(fi, fj, dim=-1, eps=1e-8)
    p = torch.sigmoid(scale[:, None] * cos + bias[:, None])
    return 0.5 * (same[None, :].float() - p).pow(2), p
