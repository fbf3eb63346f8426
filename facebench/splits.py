"""Holding people out: the one rule for keeping a seeded share of a set's people aside.

Used where a fit must be judged, or made, on people another fit never saw: the evaluation's
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
