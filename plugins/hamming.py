"""Hamming verifier on binarised features (DeepID2+, Sun, Wang, Tang 2015, Sec. 6).

DeepID2+ features are moderately sparse, and the paper finds that keeping only which neurons
are active (> 0 after ReLU) and comparing faces by Hamming distance loses little accuracy. The
score is minus the Hamming distance, so higher still means "same person". No PCA: a projection
would destroy the activity pattern being compared.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.components import BuildContext, Verifier
from facebench.config import ConfigError
from facebench.hookspecs import hookimpl
from facebench.verifiers import VerifierConfig


@dataclass
class HammingConfig(VerifierConfig):
    """threshold: a unit counts as active when its feature value exceeds it (0: ReLU activity).

    pca_dim, pca_whiten: must stay unset (the fields every verifier has; a projection would
    replace the units whose activity is compared).
    """

    name: str = "hamming"
    threshold: float = 0.0


class HammingVerifier(Verifier):
    """-Hamming distance between the active-unit patterns of two faces; nothing to fit."""

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = threshold

    def binarise(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) > self.threshold).astype(np.float32)

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return -(self.binarise(a) != self.binarise(b)).sum(axis=1).astype(np.float64)

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """|a| + |b| - 2 a.b per pair of binary rows: one matrix product (exact in float32 below 2^24 units)."""
        ba, bb = self.binarise(a), self.binarise(b)
        out = (ba @ bb.T).astype(np.float64)
        out *= 2.0
        out -= ba.sum(axis=1, dtype=np.float64)[:, None]
        out -= bb.sum(axis=1, dtype=np.float64)[None, :]
        return out


def build_hamming(cfg: HammingConfig, ctx: BuildContext) -> HammingVerifier:
    if cfg.pca_dim is not None or cfg.pca_whiten:
        raise ConfigError(
            f"verifier=hamming compares which feature units are active; verifier.pca_dim={cfg.pca_dim} would compare "
            "PCA components instead. Set verifier.pca_dim=null (as +method=deepid2plus_hamming does)."
        )
    return HammingVerifier(cfg.threshold)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("verifier", "hamming", build_hamming, HammingConfig)
