"""The Hamming verifier on binarised (active / inactive) features, on hand values."""
from __future__ import annotations

import numpy as np
import pytest

from facebench.components import BuildContext
from facebench.config import ConfigError
from facebench_plugins.hamming import HammingConfig, HammingVerifier, build_hamming

A = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])  # active: 101, 000
B = np.array([[0.5, -1.0, 0.0], [3.0, 3.0, 3.0]])  # active: 100, 111


def test_scores_are_minus_hamming_distances_of_active_patterns():
    v = HammingVerifier().fit(A, np.array([0, 1]))
    np.testing.assert_array_equal(v.score(A, B), [-1.0, -3.0])
    np.testing.assert_array_equal(v.score_matrix(A, B), [[-1.0, -1.0], [-1.0, -3.0]])


def test_score_matrix_agrees_with_aligned_scores_on_random_features():
    rng = np.random.default_rng(0)
    a, b = np.maximum(rng.normal(size=(30, 64)), 0), np.maximum(rng.normal(size=(30, 64)), 0)
    v = HammingVerifier()
    np.testing.assert_array_equal(np.diag(v.score_matrix(a, b)), v.score(a, b))
    assert HammingVerifier(threshold=0.5).score(np.array([[0.4]]), np.array([[0.0]]))[0] == 0.0


def test_pca_is_refused():
    with pytest.raises(ConfigError, match="pca_dim=null"):
        build_hamming(HammingConfig(pca_dim=32), BuildContext())
