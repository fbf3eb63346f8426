"""Holding people out: the one rule for keeping a seeded share of a set's people aside.

Used where a fit must be judged, or made, on people another fit never saw: the learning curve
(``evaluation.curve_holdout``: validation accuracy on training people the network does not
train on), the evaluation's
verifier hold-out (``evaluation.verifier_holdout``: the verifier is fitted on people the network
did not train on, as DeepID2 fitted Joint Bayesian on CelebFaces+B) and the DeepID2 ensemble's
patch selection (``verifier.holdout``: sets are chosen on pairs of people the Joint Bayesian
models did not see). Only people with 2+ images can be held out (a held-out person must give a
same-person pair or a within-person variance), and each side needs at least two of them.
"""
from __future__ import annotations

import numpy as np

from facebench.errors import ConfigError


def hold_out_people(counts: np.ndarray, share: float, rng: np.random.Generator, key: str, where: str) -> np.ndarray:
    """Sorted positions (into ``counts``, images per person) of the held-out people: a ``share``
    of those with 2+ images, drawn with ``rng``. ``key`` and ``where`` name the setting and the
    set in the refusal."""
    multi = np.flatnonzero(np.asarray(counts) >= 2)
    held = rng.permutation(multi)[: int(round(share * len(multi)))]
    if not 0.0 < share < 1.0 or len(held) < 2 or len(multi) - len(held) < 2:
        raise ConfigError(
            f"{key}={share} holds out {len(held)} of the {len(multi)} people with 2+ images of {where}; "
            "the held-out share and the rest each need 2 or more of them: change the share"
        )
    return np.sort(held)


def draw_pairs(labels: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` same and ``count`` different pairs (row indices into ``labels``), LFW-style: a
    same pair picks a person with 2+ images, then two of them; a different pair two people, then
    one image of each."""
    people, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(people))]
    multi = [m for m in members if len(m) >= 2]
    same = np.array([rng.choice(multi[k], size=2, replace=False) for k in rng.integers(len(multi), size=count)])
    two = [rng.choice(len(members), size=2, replace=False) for _ in range(count)]
    diff = np.array([[rng.choice(members[a]), rng.choice(members[b])] for a, b in two])
    return np.concatenate([same, diff]), np.repeat([True, False], count)
