"""The slow baseline of the Joint Bayesian benchmark: the EM as a Python loop over people.

Only the benchmark suite uses this; pipelines use the vectorised plugin
(``facebench_plugins.deepid2.joint_bayesian``). It has the computational shape of the widely
used public implementation (cyh24/Joint-Bayesian), which METHODS.md names as the bar to beat:
per-count matrices built with pseudo-inverses, then a Python loop over people in which every
image of a person is multiplied by those d x d matrices before summing, and a covariance over
all image residuals every iteration. Initialisation, updates (either ``em`` reading),
covariance normalisation, singleton exclusion and the final A, G are the plugin's, so the benchmark
compares speed at equal results. It runs a fixed number of iterations so that both sides do
the same work. It lives in the core package and returns plain arrays because the core never
imports a plugin.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class NaiveJointBayesian(NamedTuple):
    """What the naive fit produces: the data mean, the two covariances and A, G."""

    mean: np.ndarray
    S_mu: np.ndarray
    S_eps: np.ndarray
    A: np.ndarray
    G: np.ndarray


def naive_joint_bayesian_fit(
    x: np.ndarray, labels: np.ndarray, n_iter: int, em: str = "posterior", expand: bool = False
) -> NaiveJointBayesian:
    """Per-person loop EM for ``n_iter`` iterations (people with one image left out).

    ``em`` is the plugin's option: "point" (the public implementation's updates) or
    "posterior" (exact EM: posterior covariances added, moment-corrected start). ``expand``
    (posterior only) is the plugin's ``accelerate="px"``, written the long way: the loading
    regressed from per-person sums of outer products, then per-image residuals under it.
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    people = [x[labels == c] for c in np.unique(labels)]
    people = [p for p in people if len(p) >= 2]
    mean = np.concatenate(people).mean(axis=0)
    people = [p - mean for p in people]
    n_images = sum(len(p) for p in people)

    s_mu = np.cov(np.array([p.mean(axis=0) for p in people]), rowvar=False)
    s_eps = np.cov(np.concatenate([p - p.mean(axis=0) for p in people]), rowvar=False)
    if em == "posterior":
        s_eps *= (n_images - 1) / (n_images - len(people))
        eig, vec = np.linalg.eigh(s_mu - np.mean([1.0 / len(p) for p in people]) * s_eps)
        s_mu = (vec * np.clip(eig, 0.0, None)) @ vec.T
    for _ in range(n_iter):
        f = np.linalg.pinv(s_eps)
        to_mu, to_eps, post = {}, {}, {}
        for m in sorted({len(p) for p in people}):
            g_m = -np.linalg.pinv(m * s_mu + s_eps) @ s_mu @ f
            to_mu[m] = s_mu @ (f + m * g_m)
            to_eps[m] = s_eps @ g_m
            post[m] = s_mu - m * s_mu @ np.linalg.pinv(m * s_mu + s_eps) @ s_mu
        mu_hat = []
        eps_hat = []
        for p in people:
            m = len(p)
            mu_hat.append((to_mu[m] @ p.T).sum(axis=1))
            eps_hat.append(p + (to_eps[m] @ p.T).sum(axis=1))
        if em == "posterior" and expand:
            t_xm = sum(np.outer(p.sum(axis=0), mu) for p, mu in zip(people, mu_hat))
            t_mm = sum(len(p) * (np.outer(mu, mu) + post[len(p)]) for p, mu in zip(people, mu_hat))
            loading = t_xm @ np.linalg.pinv(t_mm)
            resid = np.concatenate([p - loading @ mu for p, mu in zip(people, mu_hat)])
            s_eps = (resid.T @ resid + loading @ sum(len(p) * post[len(p)] for p in people) @ loading.T) / n_images
            second = sum(np.outer(mu, mu) + post[len(p)] for p, mu in zip(people, mu_hat)) / len(people)
            s_mu = loading @ second @ loading.T
        elif em == "posterior":
            mus, epss = np.array(mu_hat), np.concatenate(eps_hat)
            s_mu = (mus.T @ mus + sum(post[len(p)] for p in people)) / len(people)
            s_eps = (epss.T @ epss + sum(len(p) * post[len(p)] for p in people)) / n_images
        else:
            s_mu = np.cov(np.array(mu_hat), rowvar=False)
            s_eps = np.cov(np.concatenate(eps_hat), rowvar=False)

    f = np.linalg.pinv(s_eps)
    g = -np.linalg.pinv(2.0 * s_mu + s_eps) @ s_mu @ f
    a = np.linalg.pinv(s_mu + s_eps) - (f + g)
    return NaiveJointBayesian(mean=mean, S_mu=s_mu, S_eps=s_eps, A=a, G=g)
