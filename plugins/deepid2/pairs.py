"""Which pairs of a P x K batch feed DeepID2's verification signal.

The paper samples pairs of training images at random; in a stream of random pairs almost all are
different-identity pairs. facebench draws pairs from P x K batches (P identities x K images), which
hold P * K(K-1)/2 same pairs against many times more different ones (32 x 4: 192 against
7,936). Two readings:

- ``balanced`` (default): every same pair of the batch, plus as many different pairs drawn
  uniformly without replacement from the batch's different pairs (all of them when there are
  fewer). Each pair counts once: the signal, the train pair accuracy and the margin's threshold
  window all see a half-same, half-different pair sample.
- ``all``: every pair of the batch, unweighted (closer to the paper's random pairs, whose
  threshold is then dominated by different pairs).

The draw uses torch's global generator, which the trainer seeds and checkpoints, so resumed
runs draw the same pairs.
"""
from __future__ import annotations

import torch

PAIRINGS = ("balanced", "all")


def batch_pairs(labels: torch.Tensor, pairing: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(i, j, same): index vectors of the chosen pairs (i < j) and whether each is a same pair."""
    i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
    same = labels[i] == labels[j]
    if pairing == "all":
        return i, j, same
    positives = torch.nonzero(same).flatten()
    negatives = torch.nonzero(~same).flatten()
    count = min(len(positives), len(negatives))
    drawn = negatives[torch.randperm(len(negatives), device="cpu")[:count].to(labels.device)]
    keep = torch.cat([positives, drawn])
    return i[keep], j[keep], same[keep]
