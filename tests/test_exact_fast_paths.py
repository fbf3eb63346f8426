"""Faster paths that must give the same answer as the plain ones: 2x2 max pooling at inference
(facebench.nn.pool) and the PCA of wide data through the Gram matrix (facebench.verifiers)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from facebench.nn.pool import MaxPool2x2
from facebench.verifiers import WIDE_PCA_MIN_DIM, CosineVerifier, wide_pca


def test_inference_pooling_equals_max_pool2d_bit_for_bit_and_training_keeps_its_gradient() -> None:
    pool = MaxPool2x2()
    for shape in [(3, 4, 8, 6), (2, 3, 7, 9), (1, 1, 5, 5)]:
        x = torch.relu(torch.randn(shape))
        x[0, 0, :2, :2] = 0.0  # a window of ties
        with torch.no_grad():
            assert torch.equal(pool(x), F.max_pool2d(x, 2))
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        grad = torch.randn_like(F.max_pool2d(x, 2))
        pool(a).backward(grad)
        F.max_pool2d(b, 2).backward(grad)
        assert torch.equal(a.grad, b.grad)
    nan = torch.zeros(1, 1, 2, 2)
    nan[0, 0, 1, 1] = float("nan")
    assert torch.isnan(pool(nan)).all() and torch.isnan(F.max_pool2d(nan, 2)).all()


def test_wide_pca_is_the_exact_pca() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 40)) @ rng.normal(size=(40, 300)) + 0.1 * rng.normal(size=(60, 300))
    mean, components, variance = wide_pca(x, 20)
    exact = PCA(20, svd_solver="full").fit(x)
    np.testing.assert_allclose(variance, exact.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(components * exact.components_, axis=1)), 1.0, atol=1e-8)
    np.testing.assert_allclose(mean, exact.mean_)


def test_a_verifier_on_wide_features_uses_the_gram_route() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, WIDE_PCA_MIN_DIM + 10))
    verifier = CosineVerifier(pca_dim=10).fit(x, np.repeat(np.arange(25), 2))
    _, components, _ = wide_pca(x, 10)
    np.testing.assert_allclose(np.abs(verifier.state()["pca_components"]), np.abs(components))
