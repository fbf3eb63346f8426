"""Seeded stand-ins for extracted features: identity structure without training a network.

Evaluation speed depends on how many images, identities and pairs there are, and a little
on the scores (ties, how thresholds fall), not on what the features mean. Features here are
an identity centre plus within-identity noise, so verifiers have a real signal to fit and
the metrics come out in a plausible range.
"""
from __future__ import annotations

import numpy as np

#: LFW: 5,749 people, 13,233 images, 4,069 people with a single image.
LFW_PEOPLE = 5749
LFW_IMAGES = 13233
#: Zipf exponent whose identity sizes match LFW's (about 71% singletons, mean about 2.3).
LFW_ZIPF = 2.4
LFW_MAX_IMAGES = 530


def lfw_like_counts(rng: np.random.Generator, people: int = LFW_PEOPLE) -> np.ndarray:
    """Images per identity with LFW's heavy-tailed shape (used when the real lists are absent)."""
    return np.minimum(rng.zipf(LFW_ZIPF, size=people), LFW_MAX_IMAGES)


def identity_features(labels: np.ndarray, dim: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    """float32 (N, dim): a random centre per identity plus noise, both with variances that decay
    over the dimensions (3 down to 0.3), so that a PCA has structure to find. ``noise`` is the
    within-identity spread relative to the centres' and sets how hard verification is."""
    n_ids = int(labels.max()) + 1
    scale = np.geomspace(3.0, 0.3, dim)
    centres = rng.normal(size=(n_ids, dim)) * scale
    x = centres[labels] + noise * rng.normal(size=(len(labels), dim)) * scale
    return x.astype(np.float32)
