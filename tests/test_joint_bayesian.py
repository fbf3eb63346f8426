"""Joint Bayesian: the vectorised EM against an independent per-person EM, scores, verifier API."""
from __future__ import annotations

from dataclasses import fields
from typing import Optional

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facebench.verifiers import CosineVerifier
from facebench_plugins.deepid2.joint_bayesian import (
    GRAM_MIN_PEOPLE,
    JointBayesianConfig,
    JointBayesianVerifier,
    fit_joint_bayesian,
)


def _model_data(
    seed: int, n_people: int = 60, counts: tuple[int, int] = (2, 8), dim: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """People drawn (by ``seed``) from one fixed Joint Bayesian model with a non-zero mean.

    Identity variance is concentrated in some directions and within-person variance in the
    others, the situation the model is built for.
    """
    model_rng = np.random.default_rng(12345)
    basis, _ = np.linalg.qr(model_rng.normal(size=(dim, dim)))
    offset = model_rng.normal(size=dim)
    spectrum = np.geomspace(4.0, 0.05, dim)
    s_mu = basis @ np.diag(spectrum) @ basis.T
    s_eps = basis @ np.diag(spectrum[::-1]) @ basis.T
    rng = np.random.default_rng(seed)
    n_images = rng.integers(counts[0], counts[1] + 1, size=n_people)
    labels = np.repeat(np.arange(n_people), n_images)
    mu = rng.multivariate_normal(np.zeros(dim), s_mu, size=n_people)
    eps = rng.multivariate_normal(np.zeros(dim), s_eps, size=len(labels))
    return mu[labels] + eps + offset, labels


def _mixed_count_data() -> tuple[np.ndarray, np.ndarray]:
    """Image counts shared by many people (2 and 3 images) beside counts held by a few (4-12):
    the EM's people products take both of their routes (per-count Gram matrices, direct rows)."""
    x_many, labels_many = _model_data(0, n_people=160, counts=(2, 3))
    x_few, labels_few = _model_data(1, n_people=20, counts=(4, 12))
    labels = np.r_[labels_many, labels_few + labels_many.max() + 1]
    people_per_count = np.unique(np.bincount(labels), return_counts=True)[1]
    assert people_per_count.max() >= GRAM_MIN_PEOPLE > people_per_count.min()
    return np.r_[x_many, x_few], labels


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _reference_em(
    x: np.ndarray,
    labels: np.ndarray,
    n_iter: int,
    em: str = "posterior",
    start: Optional[tuple[np.ndarray, np.ndarray]] = None,
) -> dict[str, np.ndarray]:
    """The EM written out person by person with explicit inverses.

    Deliberately shares nothing with the implementation: same initialisation, same
    normalisation, same fixed number of iterations, singletons left out. "point" is METHODS.md's
    update (covariances of the point estimates, np.cov); "posterior" is textbook EM for the
    two-level Gaussian model: E[mu mu' | x] = mu_hat mu_hat' + Cov[mu | x], with
    Cov[mu | x] = inv(inv(S_mu) + m inv(S_eps)) written here in the form that stays finite when
    S_mu is singular, started from moment estimates or from ``start`` = (S_mu, S_eps).
    """
    people = [x[labels == c] for c in np.unique(labels)]
    people = [p for p in people if len(p) >= 2]
    mean = np.concatenate(people).mean(axis=0)
    people = [p - mean for p in people]
    n = sum(len(p) for p in people)
    s_mu = np.cov(np.array([p.mean(axis=0) for p in people]).T)
    residuals = np.concatenate([p - p.mean(axis=0) for p in people])
    if em == "point":
        s_eps = np.cov(residuals.T)
    else:
        s_eps = residuals.T @ residuals / (n - len(people))
        w, u = np.linalg.eigh(s_mu - sum(1.0 / len(p) for p in people) / len(people) * s_eps)
        s_mu = u @ np.diag(np.maximum(w, 0.0)) @ u.T
    if start is not None:
        s_mu, s_eps = start
    for _ in range(n_iter):
        f = np.linalg.inv(s_eps)
        mus, epss, mu_second, eps_second = [], [], 0.0, 0.0
        for p in people:
            m = len(p)
            g_m = -np.linalg.inv(m * s_mu + s_eps) @ s_mu @ f
            total = p.sum(axis=0)
            mu_hat = s_mu @ (f + m * g_m) @ total
            mus.append(mu_hat)
            post = s_mu - s_mu @ np.linalg.inv(s_mu + s_eps / m) @ s_mu
            mu_second = mu_second + np.outer(mu_hat, mu_hat) + post
            for x_j in p:
                eps_hat = x_j + s_eps @ g_m @ total
                epss.append(eps_hat)
                eps_second = eps_second + np.outer(eps_hat, eps_hat) + post
        if em == "point":
            s_mu = np.cov(np.array(mus).T)
            s_eps = np.cov(np.array(epss).T)
        else:
            s_mu = mu_second / len(people)
            s_eps = eps_second / n
    f = np.linalg.inv(s_eps)
    g = -np.linalg.inv(2 * s_mu + s_eps) @ s_mu @ f
    a = np.linalg.inv(s_mu + s_eps) - (f + g)
    return {"mean": mean, "S_mu": s_mu, "S_eps": s_eps, "A": a, "G": g}


def _pairs(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same-person pairs (consecutive images of a person; labels are sorted) and as many
    random different-person pairs, with 1/0 targets."""
    same = np.flatnonzero(labels[:-1] == labels[1:])
    i = rng.integers(0, len(labels), size=4 * len(same))
    j = rng.integers(0, len(labels), size=4 * len(same))
    diff = np.flatnonzero(labels[i] != labels[j])[: len(same)]
    return np.r_[same, i[diff]], np.r_[same + 1, j[diff]], np.r_[np.ones(len(same)), np.zeros(len(diff))]


@pytest.mark.parametrize("mixed_counts", [False, True], ids=["few-people-per-count", "mixed-counts"])
@pytest.mark.parametrize("em", ["posterior", "point"])
def test_matches_independent_per_person_em(em, mixed_counts):
    x, labels = _mixed_count_data() if mixed_counts else _model_data(0)
    ref = _reference_em(x, labels, n_iter=15, em=em)
    model = fit_joint_bayesian(x, labels, max_iter=15, tol=0.0, em=em, accelerate="none")
    assert model.iterations == 15 and not model.converged
    for key in ("mean", "S_mu", "S_eps", "A", "G"):
        assert _rel(getattr(model, key), ref[key]) < 1e-6, key


def test_posterior_em_does_not_decay_where_point_em_does():
    """Few images per person and weak identity variance (LFW's shape): the point-estimate
    update shrinks S_mu every iteration and test accuracy falls as it runs; exact EM holds."""
    x, labels = _model_data(12, n_people=400, counts=(2, 4), dim=10)
    x_test, labels_test = _model_data(13, n_people=300, counts=(2, 4), dim=10)
    x, x_test = x + 3.0 * np.random.default_rng(0).normal(size=x.shape), x_test + 3.0 * np.random.default_rng(1).normal(size=x_test.shape)
    i, j, same = _pairs(labels_test, np.random.default_rng(1))

    def auc(iterations: int, em: str) -> float:
        model = fit_joint_bayesian(x, labels, max_iter=iterations, tol=0.0, em=em, accelerate="none")
        return roc_auc_score(same, model.score(x_test[i], x_test[j]))

    assert auc(100, "point") < auc(2, "point") - 0.02
    assert auc(100, "posterior") > auc(100, "point") + 0.02
    assert auc(100, "posterior") >= auc(2, "posterior") - 0.005


def test_converges_on_model_data():
    x, labels = _model_data(1)
    model = fit_joint_bayesian(x, labels, accelerate="none")
    assert model.converged and model.iterations < 100
    # Converged means one more EM step changes S_eps by less than the tolerance (1e-4).
    again = fit_joint_bayesian(x, labels, max_iter=model.iterations + 1, tol=0.0, accelerate="none")
    assert _rel(again.S_eps, model.S_eps) < 1e-4


def test_squarem_reaches_the_plain_em_fit_in_fewer_steps():
    x, labels = _model_data(15, n_people=200, counts=(2, 4))
    plain = fit_joint_bayesian(x, labels, max_iter=3000, tol=1e-9, accelerate="none")
    fast = fit_joint_bayesian(x, labels, max_iter=3000, tol=1e-9, accelerate="squarem")
    assert plain.converged and fast.converged
    assert fast.iterations < plain.iterations / 2, (fast.iterations, plain.iterations)
    for key in ("S_mu", "S_eps", "A", "G"):
        assert _rel(getattr(fast, key), getattr(plain, key)) < 1e-5, key


def _log_likelihood(x: np.ndarray, labels: np.ndarray, s_mu: np.ndarray, s_eps: np.ndarray, mean: np.ndarray) -> float:
    """log p(X) under the model, person by person: a person's stacked images are Gaussian with
    covariance I (x) S_eps + 11' (x) S_mu."""
    total = 0.0
    for c in np.unique(labels):
        p = x[labels == c] - mean
        m, d = p.shape
        if m < 2:
            continue
        cov = np.kron(np.eye(m), s_eps) + np.kron(np.ones((m, m)), s_mu)
        _, log_det = np.linalg.slogdet(cov)
        v = p.ravel()
        total -= 0.5 * (log_det + v @ np.linalg.solve(cov, v) + m * d * np.log(2 * np.pi))
    return total


def test_px_em_beats_plain_em_where_identity_variance_is_low_rank():
    """Identity variance of rank 3 in 10 dims (the boundary of the parameter space): plain EM
    keeps S_mu's null space where the clipped moment start put it (a direction with l = 0 gets
    z = 0 and stays null) and shrinks the rest slowly; PX-EM's loading rotates it. PX-EM's fit
    has the higher likelihood after 30 steps than plain EM after 1,000, never loses likelihood
    on the way, and converges to a fixed point of the plain EM step."""
    rng = np.random.default_rng(21)
    labels = np.repeat(np.arange(150), rng.integers(2, 5, size=150))
    mu = rng.normal(size=(150, 3)) @ rng.normal(size=(3, 10))
    x = mu[labels] + rng.normal(size=(len(labels), 10))
    plain = fit_joint_bayesian(x, labels, max_iter=1000, tol=0.0, accelerate="none")
    steps = [fit_joint_bayesian(x, labels, max_iter=k, tol=0.0, accelerate="px") for k in (1, 2, 5, 10, 30)]
    likelihood = [_log_likelihood(x, labels, f.S_mu, f.S_eps, f.mean) for f in steps]
    assert np.all(np.diff(likelihood) >= -1e-6), likelihood
    assert likelihood[-1] > _log_likelihood(x, labels, plain.S_mu, plain.S_eps, plain.mean) + 0.1
    px = fit_joint_bayesian(x, labels, max_iter=5000, tol=1e-10, accelerate="px")
    assert px.converged
    one_plain_step = _reference_em(x, labels, n_iter=1, start=(px.S_mu, px.S_eps))
    assert _rel(one_plain_step["S_mu"], px.S_mu) < 1e-6 and _rel(one_plain_step["S_eps"], px.S_eps) < 1e-6


def test_px_em_fit_is_at_least_as_likely_as_the_converged_plain_em_fit():
    x, labels = _model_data(15, n_people=200, counts=(2, 4))
    plain = fit_joint_bayesian(x, labels, max_iter=3000, tol=1e-9, accelerate="none")
    px = fit_joint_bayesian(x, labels, max_iter=3000, tol=1e-9, accelerate="px")
    assert plain.converged and px.converged and px.iterations < plain.iterations / 2
    assert _log_likelihood(x, labels, px.S_mu, px.S_eps, px.mean) >= _log_likelihood(
        x, labels, plain.S_mu, plain.S_eps, plain.mean) - 1e-6


def test_scores_are_the_log_likelihood_ratio_formula():
    x, labels = _model_data(2)
    model = fit_joint_bayesian(x, labels)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 10)), rng.normal(size=(7, 10))
    expected = []
    for x1, x2 in zip(a - model.mean, b - model.mean):
        expected.append(x1 @ model.A @ x1 + x2 @ model.A @ x2 - 2 * x1 @ model.G @ x2)
    np.testing.assert_allclose(model.score(a, b), expected, rtol=1e-10, atol=1e-10)


def test_score_matrix_equals_score_on_all_pairs():
    x, labels = _model_data(3)
    model = fit_joint_bayesian(x, labels)
    a, b = x[:9], x[20:33]
    ii, jj = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    pairwise = model.score(a[ii.ravel()], b[jj.ravel()]).reshape(len(a), len(b))
    np.testing.assert_allclose(model.score_matrix(a, b), pairwise, rtol=1e-10, atol=1e-10)


def test_separates_model_data_better_than_cosine():
    x, labels = _model_data(4, n_people=300)
    x_test, labels_test = _model_data(5, n_people=200)  # other people, same model
    i, j, same = _pairs(labels_test, np.random.default_rng(1))
    jb = JointBayesianVerifier().fit(x, labels)
    cosine = CosineVerifier(pca_dim=x.shape[1]).fit(x, labels)  # a full-rank PCA: cosine on centred features
    auc_jb = roc_auc_score(same, jb.score(x_test[i], x_test[j]))
    auc_cos = roc_auc_score(same, cosine.score(x_test[i], x_test[j]))
    assert auc_jb > auc_cos + 0.1, (auc_jb, auc_cos)


def test_singletons_are_left_out():
    x, labels = _model_data(6)
    rng = np.random.default_rng(2)
    singles = 100.0 + 50.0 * rng.normal(size=(15, x.shape[1]))  # would wreck any covariance
    x_all = np.concatenate([x, singles])
    labels_all = np.concatenate([labels, 1000 + np.arange(15)])
    with_singles = fit_joint_bayesian(x_all, labels_all, max_iter=10, tol=0.0)
    without = fit_joint_bayesian(x, labels, max_iter=10, tol=0.0)
    for key in ("mean", "S_mu", "S_eps", "A", "G"):
        np.testing.assert_allclose(getattr(with_singles, key), getattr(without, key), rtol=1e-12, atol=1e-12)


def test_needs_two_people_with_two_images():
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="at least 2 people"):
        fit_joint_bayesian(x, np.array([0, 0, 1, 2, 3]))


def test_fewer_samples_than_dims_raises_unless_pca_or_ridge():
    x, labels = _model_data(7, n_people=10, counts=(3, 3), dim=10)
    x = np.hstack([x, np.random.default_rng(3).normal(size=(len(x), 40))])  # 30 images, 50 dims
    with pytest.raises(ValueError, match="pca_dim"):
        fit_joint_bayesian(x, labels)
    for verifier in (JointBayesianVerifier(ridge=1e-3), JointBayesianVerifier(pca_dim=15)):
        scores = verifier.fit(x, labels).score_matrix(x, x)
        assert np.isfinite(scores).all()


def test_constant_feature_dimension_raises_unless_ridge():
    x, labels = _model_data(8)
    x[:, 3] = 0.0  # a dead ReLU unit
    with pytest.raises(ValueError, match="ridge"):
        fit_joint_bayesian(x, labels)
    model = fit_joint_bayesian(x, labels, ridge=1e-3)
    assert np.isfinite(model.score_matrix(x, x)).all()


def test_npz_round_trip(tmp_path):
    x, labels = _model_data(9)
    fitted = JointBayesianVerifier(pca_dim=6).fit(x, labels)
    np.savez(tmp_path / "jb.npz", **fitted.state())
    with np.load(tmp_path / "jb.npz", allow_pickle=False) as saved:
        loaded = JointBayesianVerifier(pca_dim=6).load_state(dict(saved))
    np.testing.assert_array_equal(loaded.score_matrix(x[:20], x[20:40]), fitted.score_matrix(x[:20], x[20:40]))
    assert loaded.model.iterations == fitted.model.iterations
    assert loaded.model.converged == fitted.model.converged


def test_pca_in_front_through_projected_verifier():
    x, labels = _model_data(10)
    verifier = JointBayesianVerifier(pca_dim=5).fit(x, labels)
    assert verifier.model.A.shape == (5, 5)
    direct = fit_joint_bayesian(verifier.project(x), labels)
    a, b = x[:30], x[30:60]
    np.testing.assert_allclose(verifier.score(a, b), direct.score(verifier.project(a), verifier.project(b)))
    np.testing.assert_allclose(np.diag(verifier.score_matrix(a, b)), verifier.score(a, b), rtol=1e-10, atol=1e-10)


def test_config_fields_are_the_verifier_parameters():
    config = JointBayesianConfig(pca_dim=7, ridge=1e-3)
    verifier = JointBayesianVerifier(**{f.name: getattr(config, f.name) for f in fields(config) if f.name != "name"})
    assert (verifier.pca_dim, verifier.ridge, verifier.max_iter, verifier.tol, verifier.em, verifier.accelerate) == (
        7, 1e-3, 100, 1e-4, "posterior", "px")
    assert config.name == "joint_bayesian"


def test_unfitted_verifier_says_so():
    with pytest.raises(RuntimeError, match="fit"):
        JointBayesianVerifier().score(np.zeros((1, 3)), np.zeros((1, 3)))


@pytest.mark.parametrize("mixed_counts", [False, True], ids=["few-people-per-count", "mixed-counts"])
@pytest.mark.parametrize("em, accelerate", [("posterior", "none"), ("point", "none"), ("posterior", "px")])
def test_naive_benchmark_baseline_gives_the_same_model(em, accelerate, mixed_counts):
    from facebench_plugins.deepid2.bench.naive_jb import naive_joint_bayesian_fit

    x, labels = _mixed_count_data() if mixed_counts else _model_data(11)
    naive = naive_joint_bayesian_fit(x, labels, n_iter=8, em=em, expand=accelerate == "px")
    model = fit_joint_bayesian(x, labels, max_iter=8, tol=0.0, em=em, accelerate=accelerate)
    for key in ("mean", "S_mu", "S_eps", "A", "G"):
        assert _rel(getattr(model, key), getattr(naive, key)) < 1e-6, key


def test_pca_drops_directions_the_features_do_not_span():
    """Dead ReLU units give constant feature dimensions; a PCA asked for more components than
    the features span keeps only the spanned ones, so Joint Bayesian stays defined."""
    x, labels = _model_data(14)
    x = np.hstack([x, np.zeros((len(x), 5))])  # 15 dims, 10 spanned
    verifier = JointBayesianVerifier(pca_dim=15).fit(x, labels)
    assert verifier.model.A.shape == (10, 10)
    assert np.isfinite(verifier.score_matrix(x[:5], x[5:10])).all()


def test_configured_verifier_survives_collinear_within_person_directions():
    """Collinear units (within-person rank below the dimension although every PCA component
    has variance) fail the unregularised fit; the configured default ridge keeps a run alive."""
    x, labels = _model_data(16)
    x[:, 3] = x[:, 2] + np.arange(labels.max() + 1)[labels]  # differs from dim 2 by a per-person constant
    with pytest.raises(ValueError, match="ridge"):
        fit_joint_bayesian(x, labels)
    config = JointBayesianConfig(pca_dim=x.shape[1])
    verifier = JointBayesianVerifier(**{f.name: getattr(config, f.name) for f in fields(config) if f.name != "name"})
    assert np.isfinite(verifier.fit(x, labels).score_matrix(x[:5], x[5:10])).all()


def test_unknown_acceleration_is_refused_with_the_config_key():
    from facebench.config import ConfigError
    from facebench_plugins.deepid2.fusion import EnsembleVerifierConfig, PatchEnsembleVerifier

    with pytest.raises(ConfigError, match="verifier.accelerate='fast'.*px, squarem, none"):
        JointBayesianVerifier(accelerate="fast")
    with pytest.raises(ConfigError, match="verifier.accelerate"):  # at construction, before any training
        PatchEnsembleVerifier(EnsembleVerifierConfig(accelerate="fast"))
    with pytest.raises(ValueError, match="accelerate"):
        fit_joint_bayesian(*_model_data(0), accelerate="fast")
