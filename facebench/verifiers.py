"""Core verifiers (cosine, L2) and the optional PCA that any verifier may chain in front.

PCA is fitted with the verifier, on the same training features, so a protocol that fits the
verifier per fold also fits the PCA per fold: nothing about the test fold leaks into it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import logging

import numpy as np

from facebench.components import Verifier
from facebench.validation import ranged

log = logging.getLogger(__name__)

# A principal component whose variance is below this fraction of the first one's is numerical
# zero (float32 features: relative singular values near 1e-7 are round-off, 1e-5 is signal).
NULL_VARIANCE_RATIO = 1e-10
# From this many dimensions on, with fewer samples than dimensions, the PCA is solved on the
# samples' Gram matrix (see ``wide_pca``) instead of by scikit-learn, whose "auto" choice there
# is its randomized solver.
WIDE_PCA_MIN_DIM = 1000


def wide_pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, components, variances) of an exact PCA of float64 ``x`` with fewer rows than
    columns, from the eigenvectors of the centred rows' Gram matrix (n x n, n the rows).

    Why: for such data (BLUFR's ~3,000 training images of 7,755 raw pixels) scikit-learn's
    "auto" solver is randomized, and on features whose spectrum decays slowly its subspace is
    not the principal one (measured on the bench's synthetic 7,755-d features: the smallest
    principal angle cosine between its 160 components and the exact ones was 0.008, variances
    off by 0.8%); the Gram route is exact to round-off (variances to 1e-15) and faster there
    (2.7 s against 3.9 s on 2 cores).
    """
    import scipy.linalg

    mean = x.mean(axis=0)
    centred = x - mean
    gram = centred @ centred.T
    n = len(gram)
    values, vectors = scipy.linalg.eigh(gram, subset_by_index=[n - dim, n - 1])
    values, vectors = values[::-1], vectors[:, ::-1]
    scale = np.sqrt(np.clip(values, np.finfo(np.float64).tiny, None))
    return mean, (vectors.T @ centred) / scale[:, None], values / (n - 1)


@dataclass
class VerifierConfig:
    """Fields every verifier understands.

    pca_dim: project features onto this many principal components fitted on the training
      features (None: no PCA). Capped at the number of training samples minus one, and at the
      number of components with non-zero variance: directions the training features do not
      span (dead ReLU units make them) carry nothing and would make covariance-based verifiers
      such as Joint Bayesian singular.
    pca_whiten: scale components to unit variance (off by default, as in the DeepID2 paper's
      "PCA to 180 dims" which does not mention whitening).
    """

    name: str = "cosine"
    pca_dim: Optional[int] = ranged(None, ge=1)
    pca_whiten: bool = False


class ProjectedVerifier(Verifier):
    """A verifier with an optional PCA in front; subclasses see projected features only."""

    def __init__(self, pca_dim: Optional[int] = None, pca_whiten: bool = False) -> None:
        self.pca_dim = pca_dim
        self.pca_whiten = pca_whiten
        self._mean: Optional[np.ndarray] = None
        self._components: Optional[np.ndarray] = None
        self._scale: Optional[np.ndarray] = None

    # --- projection -------------------------------------------------------------------
    def project(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._components is None:
            return x
        z = (x - self._mean) @ self._components.T
        return z / self._scale if self._scale is not None else z

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "ProjectedVerifier":
        features = np.asarray(features, dtype=np.float64)
        if self.pca_dim is not None:
            from sklearn.decomposition import PCA

            dim = int(min(self.pca_dim, features.shape[1], max(1, features.shape[0] - 1)))
            if features.shape[1] >= WIDE_PCA_MIN_DIM and features.shape[0] < features.shape[1]:
                mean, components, variance = wide_pca(features, dim)
            else:
                pca = PCA(n_components=dim, svd_solver="auto", random_state=0).fit(features)
                mean, components, variance = pca.mean_, pca.components_, pca.explained_variance_
            keep = int(np.count_nonzero(variance > variance[0] * NULL_VARIANCE_RATIO)) or 1
            if keep < dim:
                log.info("PCA: %d of the %d requested components carry variance (the features span only %d "
                         "directions, e.g. dead ReLU units); keeping %d", keep, dim, keep, keep)
            self._mean = mean
            self._components = components[:keep]
            self._scale = np.sqrt(variance[:keep]) if self.pca_whiten else None
        self.fit_projected(self.project(features), np.asarray(labels))
        return self

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.score_projected(self.project(a), self.project(b))

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.score_matrix_projected(self.project(a), self.project(b))

    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self._components is not None:
            out["pca_mean"] = self._mean
            out["pca_components"] = self._components
            if self._scale is not None:
                out["pca_scale"] = self._scale
        out.update({f"v_{k}": v for k, v in self.state_projected().items()})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> "ProjectedVerifier":
        self._mean = state.get("pca_mean")
        self._components = state.get("pca_components")
        self._scale = state.get("pca_scale")
        self.load_state_projected({k[2:]: v for k, v in state.items() if k.startswith("v_")})
        return self

    # --- what a subclass provides -------------------------------------------------------
    def fit_projected(self, z: np.ndarray, labels: np.ndarray) -> None:
        """Fit on projected training features (default: nothing to fit)."""

    def score_projected(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_matrix_projected(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def state_projected(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_projected(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_projected`` returned."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class CosineVerifier(ProjectedVerifier):
    """Cosine similarity of (optionally PCA-projected) features."""

    def score_projected(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # a.b / (|a| |b|) from three row-wise dot products: no normalised copies of a and b.
        norms = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
        return np.einsum("ij,ij->i", a, b) / np.maximum(norms, 1e-24)

    def score_matrix_projected(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _unit(a) @ _unit(b).T


class L2Verifier(ProjectedVerifier):
    """Negative Euclidean distance, so that higher still means 'same person'."""

    def score_projected(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return -np.linalg.norm(a - b, axis=1)

    def score_matrix_projected(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        return -np.sqrt(np.maximum(sq, 0.0))
