"""Joint Bayesian verifier (Chen, Cao, Wang, Wen, Sun, ECCV 2012): DeepID2's reference verifier.

Model: a mean-centred feature is x = mu + eps, with the identity part mu ~ N(0, S_mu) and the
within-person part eps ~ N(0, S_eps) independent. Two faces are compared by the log-likelihood
ratio of "same person" against "different people", up to a constant:

    r(x1, x2) = x1' A x1 + x2' A x2 - 2 x1' G x2,
    F = inv(S_eps),  G = -inv(2 S_mu + S_eps) S_mu F,  A = inv(S_mu + S_eps) - (F + G).

Fitting is by EM. For a person with m images and image sum s:
G_m = -inv(m S_mu + S_eps) S_mu F, E-step mu_hat = S_mu (F + m G_m) s and
eps_hat_j = x_j + S_eps G_m s. METHODS.md (and the paper, and the public implementation) then
set S_mu = cov(mu_hat over people), S_eps = cov(eps_hat over images): ``em="point"``. That
update drops the posterior covariance Cov[mu | x] from the second moments, so S_mu loses a
positive term every iteration; with LFW's few images per person the fit gets worse the longer
it runs. The default ``em="posterior"`` is exact EM: S_mu = mean over people of
mu_hat mu_hat' + Cov[mu | x], S_eps = mean over images of eps_hat eps_hat' + Cov[mu | x],
started from the moment estimates (within scatter / (images - people), and the covariance of
person means less mean(1/m) S_eps). Its steps are parameter-expanded by default
(``accelerate="px"``, PX-EM): the moment start clips S_mu's negative directions to zero, and a
plain EM step can never leave such a null direction (its posterior identity there is zero), so
plain EM, and SQUAREM built on it, converge to the best fit *with that null space* and stop
there; measured on LFW View 2 fold 1's training people (1,493 with 2+ images) with the
bench's synthetic 320-d features at PCA 180, plain EM after 3,000
steps is 1,060 log-likelihood units below PX-EM after 27. Both stop when the relative
(Frobenius) change of S_eps is below ``tol``.

How it is computed, and why. The E-step terms depend on a person only through m, and two
identities (F + m G_m = inv(m S_mu + S_eps), S_eps G_m = -S_mu inv(m S_mu + S_eps)) give
mu_hat = S_mu inv(m S_mu + S_eps) s and eps_hat_j = x_j - mu_hat. In the generalised
eigenbasis of the pair (S_mu V = S_eps V L, V' S_eps V = I: one LAPACK call per iteration,
which Cholesky-factors S_eps) every inv(m S_mu + S_eps) is V diag(1 / (1 + m l)) V', diagonal.
The M-step covariances then follow from sufficient statistics, never from the per-image
residuals: X'X once, and per iteration one product of the per-person sums with V, then the
products of their shrunk copies (each person's row scaled by the diagonal of its image count)
with themselves and with the unshrunk rows (see ``_em_step``): for a count many people share,
through those people's Gram matrix, for the rest row by row in matrix products
(``_people_products``). No Python loop runs over people or images; one runs over the image
counts shared by at least GRAM_MIN_PEOPLE people, one Gram matrix each. The same
basis gives A and G in closed form, G = -V diag(l / (1 + 2l)) V' and
A = -V diag(l^2 / ((1 + l)(1 + 2l))) V', free of the cancellation in inv(S_mu + S_eps) - F - G
and exactly symmetric.

Decisions (each a reading a user can check):
- Covariance normalisation: for ``em="point"``, ``np.cov``'s (subtract the sample mean,
  divide by count - 1) for the initial and every M-step covariance, as the widely used public
  implementation does, so its results and ours can be compared; for ``em="posterior"`` the
  maximum-likelihood one (divide by count; the data are centred). The per-person reference EM
  in the tests and the slow baseline ``facebench_plugins.deepid2.bench.naive_jb`` implement both.
- People with a single image carry no within-person information and are left out of the fit
  altogether (the mean, the initial covariances and the EM), as METHODS.md prescribes.
- The data mean is that of the images the fit uses; scores centre features with it.
- A singular S_eps (fewer within-person degrees of freedom, images - people, than dimensions;
  or constant / collinear feature dimensions such as dead ReLU units) makes F undefined. By
  default (``ridge=0``) the fit raises a ValueError that names the numbers and suggests
  ``pca_dim`` (the DeepID2 setting: PCA to 180 dims) or ``ridge``: silently regularising would
  change the model. ``ridge > 0`` adds ridge * trace(S_eps) / dim to the diagonal of S_eps
  after initialisation and after every M-step (1e-3 is a sensible value). A singular S_mu
  (fewer people than dimensions) is harmless and needs nothing.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import scipy.linalg
import scipy.sparse

from threadpoolctl import ThreadpoolController

from facebench.config import ConfigError
from facebench.validation import one_of, ranged
from facebench.verifiers import ProjectedVerifier, VerifierConfig

EM_UPDATES = ("posterior", "point")
ACCELERATIONS = ("px", "squarem", "none")
# Generalised eigenvalues (identity-to-noise variance ratios) below this fraction of the
# largest are treated as no identity variance by the parameter-expanded step.
NULL_IDENTITY = 1e-12
# Up to this size the EM's d x d products run faster on one BLAS thread than on several
# (measured: 2,000 people x 180 dims on 2 cores, 3x faster single-threaded).
SINGLE_THREAD_MAX_DIM = 512
# The people-level products (people x d by d x d, and the counts' Gram matrices) are large
# enough to gain from every BLAS thread once there are this many people: measured on 2 cores
# (AVX2, OpenBLAS Haswell kernels), 2,000 people x 180 dims, y = S V 3.5 -> 1.9 ms and the
# Gram matrices 3.3 -> 2.2 ms, while the d x d work (the generalised eigh above all) slows down
# on two threads; so the step switches the BLAS pool around those products only.
PARALLEL_PEOPLE_MIN = 512
# An image count shared by at least this many people enters the EM step through its people's
# Gram matrix (see ``_people_products``); rarer counts through their rows. Measured on one
# thread, 180 dims: 2,000 people over 19 counts 7.4 -> 3.7 ms, LFW View 2 fold 1 (1,493 people,
# 49 counts) 5.5 -> 2.2 ms; thresholds 16 and 64 were within 0.1 ms of 32.
GRAM_MIN_PEOPLE = 32


@dataclass(frozen=True)
class JointBayesianModel:
    """A fitted Joint Bayesian model: float64 arrays, plus how the EM ended."""

    mean: np.ndarray
    S_mu: np.ndarray
    S_eps: np.ndarray
    A: np.ndarray
    G: np.ndarray
    iterations: int
    converged: bool

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """r(a_i, b_i) for aligned rows."""
        xa = np.asarray(a, dtype=np.float64) - self.mean
        xb = np.asarray(b, dtype=np.float64) - self.mean
        return _quadratic(xa, self.A) + _quadratic(xb, self.A) - 2.0 * np.einsum("ij,ij->i", xa @ self.G, xb)

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """r(a_i, b_j) for all pairs, as matrix products.

        The quadratic terms are computed once per row and the cross term is one product; the
        result is the only (len(a), len(b)) array allocated (the rest is done in place), so a
        BLUFR-sized 9,700 x 9,700 float64 matrix costs its own 750 MB and no more.
        """
        xa = np.asarray(a, dtype=np.float64) - self.mean
        xb = np.asarray(b, dtype=np.float64) - self.mean
        out = (xa @ self.G) @ xb.T
        out *= -2.0
        out += _quadratic(xa, self.A)[:, None]
        out += _quadratic(xb, self.A)[None, :]
        return out


def _quadratic(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """x_i' M x_i for every row."""
    return np.einsum("ij,ij->i", x @ m, x)


def _symmetric(c: np.ndarray) -> np.ndarray:
    """Remove the round-off asymmetry of a covariance computed through products."""
    return 0.5 * (c + c.T)


def _cov(z: np.ndarray) -> np.ndarray:
    """np.cov's normalisation (see module docstring) of the rows of z."""
    return _symmetric(np.atleast_2d(np.cov(z, rowvar=False)))


def _add_ridge(s: np.ndarray, ridge: float) -> np.ndarray:
    if ridge <= 0.0:
        return s
    return s + (ridge * np.trace(s) / len(s)) * np.eye(len(s))


def _singular_error(n_images: int, n_people: int, dim: int, rank: Optional[int] = None) -> ValueError:
    rank_text = f" (numerical rank {rank})" if rank is not None else ""
    return ValueError(
        f"Joint Bayesian: the within-person covariance is singular{rank_text}: {n_images} images of "
        f"{n_people} people give {n_images - n_people} within-person degrees of freedom for {dim} "
        "dimensions, or some feature dimensions are constant or collinear. Put a PCA in front "
        f"(pca_dim <= {rank if rank is not None else min(dim, n_images - n_people)}) or set ridge > 0 "
        "(e.g. 1e-3) to regularise S_eps."
    )


def _check_within_rank(s_eps: np.ndarray, n_images: int, n_people: int) -> None:
    """Raise the documented error when S_eps is numerically singular (numpy's matrix_rank rule)."""
    eig = np.linalg.eigvalsh(s_eps)
    cutoff = eig[-1] * len(eig) * np.finfo(np.float64).eps
    if eig[0] <= cutoff:
        raise _singular_error(n_images, n_people, len(eig), int((eig > cutoff).sum()))


def _moment_start(within: np.ndarray, s_mu_means: np.ndarray, m: np.ndarray, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased (method-of-moments) starting covariances for the posterior EM.

    The within-person scatter has n_images - n_people degrees of freedom, and the covariance of
    person means is S_mu + mean(1 / m) S_eps in expectation. Starting from these corrected
    estimates instead of the raw ones puts the EM close to the maximum-likelihood point, so it
    converges in a few iterations instead of creeping there. A negative S_mu direction (the
    means vary less than the within-person noise predicts) is clipped to zero.
    """
    s_eps = _symmetric(within / (n_images - len(m)))
    return s_eps, _psd(s_mu_means - np.mean(1.0 / m) * s_eps)


def _generalised_eigh(s_mu: np.ndarray, s_eps: np.ndarray, n_images: int, n_people: int) -> tuple[np.ndarray, np.ndarray]:
    """(l, V) with S_mu V = S_eps V diag(l) and V' S_eps V = I."""
    try:
        return scipy.linalg.eigh(s_mu, s_eps)
    except np.linalg.LinAlgError as err:
        raise _singular_error(n_images, n_people, len(s_eps)) from err


def _people_threads(n_people: int) -> int:
    """BLAS threads for the people-level products: all of the pool's (as set when the fit
    started) for many people, else one."""
    if n_people < PARALLEL_PEOPLE_MIN:
        return 1
    return max([1] + [int(pool["num_threads"]) for pool in _blas_threads().select(user_api="blas").info()])


@functools.cache
def _blas_threads() -> ThreadpoolController:
    """The BLAS libraries numpy and scipy loaded, found once: ``threadpool_limits`` searches
    the process's libraries on every call (about 4 ms), which a View 2 evaluation pays per fold."""
    return ThreadpoolController()


@dataclass
class _Statistics:
    """What the EM reads of the (centred) training images, computed once per fit.

    sums: per-person image sums s_p (people ordered by image count); m: each person's image
    count; counts, sizes: the distinct image counts and how many people have each;
    scatter: X'X; count_sums: per distinct count, the sum of its people's sums; n_images.
    The people products (``_people_products``) read ``gram``: the distinct counts with at least
    GRAM_MIN_PEOPLE people (indices into ``counts``) and ``gram_rows``, their people's row
    ranges; and ``direct_rows``, every other person's row, with ``direct_count``, the index of
    its count.
    """

    sums: np.ndarray
    m: np.ndarray
    counts: np.ndarray
    sizes: np.ndarray
    scatter: np.ndarray
    count_sums: np.ndarray
    n_images: int
    gram: np.ndarray
    gram_rows: list[slice]
    direct_rows: np.ndarray
    direct_count: np.ndarray
    people_threads: int = 1

    @classmethod
    def of(
        cls, sums: np.ndarray, m: np.ndarray, scatter: np.ndarray, n_images: int, people_threads: int = 1
    ) -> "_Statistics":
        """From per-person sums whose rows are ordered by image count ``m``; ``people_threads``:
        BLAS threads for the people-level products (see PARALLEL_PEOPLE_MIN)."""
        counts, sizes = np.unique(m, return_counts=True)
        start = np.concatenate(([0], np.cumsum(sizes)))
        gram = np.flatnonzero(sizes >= GRAM_MIN_PEOPLE)
        direct_count = np.repeat(np.arange(len(counts)), sizes)
        direct_rows = np.flatnonzero(sizes[direct_count] < GRAM_MIN_PEOPLE)
        return cls(sums, m, counts, sizes, scatter, np.add.reduceat(sums, start[:-1]), n_images, gram,
                   [slice(start[k], start[k + 1]) for k in gram], direct_rows, direct_count[direct_rows],
                   people_threads)

    @property
    def n_people(self) -> int:
        return len(self.sums)


def _people_products(y: np.ndarray, count_shrink: np.ndarray, stats: _Statistics) -> tuple[np.ndarray, ...]:
    """Z'Z, Z'Y and Z' diag(m) Z over all people, where person p's row of Z is its row of Y
    scaled by its image count's shrinkage row (``count_shrink``, one row per distinct count).

    Why two routes: people who share an image count share the scaling, so a count's three
    contributions are its people's Gram matrix W_k = Y_k'Y_k (one symmetric product) weighted
    elementwise, diag(d_k) W_k diag(d_k), diag(d_k) W_k and m_k diag(d_k) W_k diag(d_k): one
    product over those people instead of three, plus d x d work per count. That pays where a
    count has many people (LFW's 2-4 image people) and not for the long tail of prolific
    people, whose rows enter three direct products.
    """
    dim = y.shape[1]
    zz, zy, zmz = np.zeros((dim, dim)), np.zeros((dim, dim)), np.zeros((dim, dim))
    if len(stats.gram):
        w = np.stack([y[rows].T @ y[rows] for rows in stats.gram_rows])  # a.T @ a runs as syrk
        d = count_shrink[stats.gram]
        wd = w * d[:, None, :]  # W_k diag(d_k)
        zy += np.einsum("kj,kje->je", d, w)
        zz += np.einsum("kj,kje->je", d, wd)
        zmz += np.einsum("kj,kje->je", d * stats.counts[stats.gram, None], wd)
    if len(stats.direct_rows):
        y_rows = y[stats.direct_rows]
        z_rows = count_shrink[stats.direct_count] * y_rows
        root_m_z = np.sqrt(stats.m[stats.direct_rows])[:, None] * z_rows
        zy += z_rows.T @ y_rows
        zz += z_rows.T @ z_rows
        zmz += root_m_z.T @ root_m_z
    return zz, zy, zmz


def _em_step(
    s_mu: np.ndarray, s_eps: np.ndarray, stats: _Statistics, em: str, expand: bool = False, likelihood: bool = False
) -> tuple[np.ndarray, np.ndarray, Optional[float]]:
    """One EM iteration on sufficient statistics; returns the new (S_mu, S_eps) and, when
    ``likelihood`` is set (SQUAREM reads it), the log-likelihood of the given ones (up to a
    constant; see the comment at ``loglik``), else None.

    In the generalised eigenbasis (S_mu V = S_eps V diag(l), V' S_eps V = I, so inv(V) = B'
    with B = S_eps V) the E-step is mu_hat_p = B z_p with z_p = diag(l / (1 + m_p l)) y_p and
    y_p = V' s_p (so s_p = B y_p), and eps_hat_j = x_j - mu_hat_p. The M-step needs
        sum_p mu_hat_p mu_hat_p'           = B (sum_p z_p z_p') B',
        sum_j eps_hat_j eps_hat_j'          = X'X - B (sum_p y_p z_p' + z_p y_p' - m_p z_p z_p') B',
    i.e. Z'Z, Z'Y and Z' diag(m) Z over all people (``_people_products``; the shrinkage
    diag(l / (1 + m l)) is computed once per distinct count). The rest is d x d work. The sums
    of mu_hat and eps_hat, per count, give np.cov's mean correction (``em="point"``).

    ``em="posterior"`` adds the posterior covariance Cov[mu | x_p] = B diag(l / (1 + m_p l)) B'
    (which is also Cov[eps_j | x_p]) and uses the maximum-likelihood normalisation (1/people,
    1/images, no mean correction: the data are centred and the model mean is fixed).

    ``expand`` (posterior only) is the parameter-expanded M-step (PX-EM; Liu, Rubin and Wu,
    Biometrika 1998): the complete-data model gets a d x d loading, x = Gamma mu + eps, fitted
    by regressing the images on their person's posterior identity, Gamma = T_xm inv(T_mm) with
    T_xm = sum_p s_p E[mu_p]' = B R B' and T_mm = sum_p m_p E[mu_p mu_p'] = B M B'; then
    S_eps = (X'X - T_xm inv(T_mm) T_xm') / images and S_mu = Gamma (sum_p E[mu_p mu_p'] /
    people) Gamma'. The likelihood never falls and its maxima are fixed points of both updates,
    but a step also rotates and rescales the identity part, which plain EM can only creep
    towards: where the data say an identity direction has (almost) no variance, plain EM shrinks
    S_mu there by a constant fraction per step and never arrives. A direction whose l is numerically zero carries no
    identity and keeps S_mu = 0 there (its z column is zero and T_mm is singular there).
    """
    lam, v = _generalised_eigh(s_mu, s_eps, stats.n_images, stats.n_people)
    back = s_eps @ v
    count_shrink = lam / (1.0 + stats.counts[:, None] * lam)  # one row per distinct count
    if expand:
        count_shrink[:, lam <= NULL_IDENTITY * lam.max()] = 0.0
    with _blas_threads().limit(limits=stats.people_threads, user_api="blas"):
        y = stats.sums @ v
        zz, zy, zmz = _people_products(y, count_shrink, stats)
    post = stats.sizes @ count_shrink  # sum_p diag(l / (1 + m_p l)): the people's posterior covariances
    m_post = (stats.sizes * stats.counts) @ count_shrink  # the same, one term per image
    loglik = None
    if likelihood:
        # log N(X | S_mu, S_eps) + const = -(N log det S_eps + sum_p log det(I + m_p L)
        #   + tr(inv(S_eps) X'X) - sum_p y_p' diag(l / (1 + m_p l)) y_p) / 2, with inv(S_eps) = V V';
        # the last sum is the trace of Z'Y.
        log_det = float(stats.sizes @ np.log1p(np.outer(stats.counts, np.clip(lam, 0.0, None))).sum(axis=1))
        log_det_eps = 2.0 * np.log(np.diag(np.linalg.cholesky(s_eps))).sum()
        loglik = -0.5 * (stats.n_images * log_det_eps + log_det + float(np.sum((stats.scatter @ v) * v)) - np.trace(zy))
    if expand:
        gamma = _solve_psd(zmz + np.diag(m_post), zy).T  # R inv(M): the loading in the eigenbasis
        loading = back @ gamma
        s_mu_new = loading @ (zz + np.diag(post)) @ loading.T / stats.n_people
        s_eps_new = (stats.scatter - loading @ zy @ back.T) / stats.n_images
        return _symmetric(s_mu_new), _symmetric(s_eps_new), loglik
    # Z'Y + Y'Z - Z'diag(m)Z = zu + zu' with zu = Z'Y - Z'diag(m)Z / 2.
    zu = zy - 0.5 * zmz
    if em == "posterior":
        s_mu_new = back @ (zz + np.diag(post)) @ back.T / stats.n_people
        s_eps_new = (stats.scatter - back @ (zu + zu.T - np.diag(m_post)) @ back.T) / stats.n_images
        return _symmetric(s_mu_new), _symmetric(s_eps_new), loglik
    z_by_count = count_shrink * (stats.count_sums @ v)  # sum of z_p over each count's people
    z_sum, mz_sum = z_by_count.sum(axis=0), stats.counts @ z_by_count
    s_mu_new = back @ ((zz - np.outer(z_sum, z_sum) / stats.n_people) / (stats.n_people - 1)) @ back.T
    resid_sum = stats.count_sums.sum(axis=0) - back @ mz_sum
    resid_scatter = stats.scatter - back @ (zu + zu.T) @ back.T
    s_eps_new = (resid_scatter - np.outer(resid_sum, resid_sum) / stats.n_images) / (stats.n_images - 1)
    return _symmetric(s_mu_new), _symmetric(s_eps_new), loglik


def _solve_psd(m: np.ndarray, b: np.ndarray) -> np.ndarray:
    """inv(M) B for a positive semi-definite M whose zero rows and columns (directions without
    identity variance) give zero rows of the result; the rest is solved by Cholesky after
    scaling M to a unit diagonal (its entries scale with l, which spans many decades)."""
    scale = np.sqrt(np.clip(np.diag(m), 0.0, None))
    live = scale > 0.0
    out = np.zeros_like(b)
    s = scale[live]
    factor = scipy.linalg.cho_factor(m[np.ix_(live, live)] / np.outer(s, s))
    out[live] = scipy.linalg.cho_solve(factor, b[live] / s[:, None]) / s[:, None]
    return out


def fit_joint_bayesian(
    x: np.ndarray,
    labels: np.ndarray,
    max_iter: int = 100,
    tol: float = 1e-4,
    ridge: float = 0.0,
    em: str = "posterior",
    accelerate: str = "px",
) -> JointBayesianModel:
    """Fit S_mu, S_eps by EM and derive A, G (see the module docstring for the choices).

    ``accelerate`` (exact EM only; ``em="point"`` always runs its plain update): "px" the
    parameter-expanded EM step (see ``_em_step``), "squarem" SQUAREM extrapolation of plain
    steps (the default before PX-EM; earlier records were made with it), "none" plain steps.
    ``tol=0, accelerate="none"`` runs exactly ``max_iter`` plain EM steps (used to compare with
    reference EMs).
    Raises ValueError when fewer than two people have two or more images, or when S_eps is
    singular and ``ridge`` is 0.
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise ValueError(f"Joint Bayesian: need features (N, D) and N labels, got {x.shape} and {labels.shape}")
    if em not in EM_UPDATES:
        raise ValueError(f"Joint Bayesian: em={em!r}; use one of {', '.join(EM_UPDATES)}")
    if accelerate not in ACCELERATIONS:
        raise ValueError(f"Joint Bayesian: accelerate={accelerate!r}; use one of {', '.join(ACCELERATIONS)}")
    _, person, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = counts[person] >= 2
    _, person, counts = np.unique(person[keep], return_inverse=True, return_counts=True)
    x = x if keep.all() else x[keep]
    n_images, dim = x.shape
    n_people = len(counts)
    if n_people < 2:
        raise ValueError(f"Joint Bayesian: need at least 2 people with 2 or more images, got {n_people}")

    mean = x.mean(axis=0)
    x = x - mean
    # Per-person image sums (one sparse product), with the people ordered by image count so
    # that each count's people are contiguous rows (a count's Gram matrix is over one slice).
    by_count = np.argsort(counts, kind="stable")
    row = np.empty_like(by_count)
    row[by_count] = np.arange(n_people)
    membership = scipy.sparse.csr_array(
        (np.ones(n_images), (row[person], np.arange(n_images))), shape=(n_people, n_images)
    )
    sums = membership @ x
    m = counts[by_count].astype(np.float64)

    # Initialisation: covariance of the person means; within-person covariance from the
    # scatter identity sum_j (x_j - mean_p)(x_j - mean_p)' = X'X - sum_p s_p s_p' / m_p
    # (the residuals' own mean is zero, so this is np.cov of the residuals).
    scatter = x.T @ x  # numpy runs a.T @ a as one symmetric product (syrk), exactly symmetric
    s_mu = _cov(sums / m[:, None])
    within = scatter - (sums / m[:, None]).T @ sums
    if em == "point":
        s_eps = _symmetric(within / (n_images - 1))
    else:
        s_eps, s_mu = _moment_start(within, s_mu, m, n_images)
    if ridge <= 0.0:
        _check_within_rank(s_eps, n_images, n_people)
    s_eps = _add_ridge(s_eps, ridge)

    people_threads = _people_threads(n_people)
    with _blas_threads().limit(limits=1 if dim <= SINGLE_THREAD_MAX_DIM else None, user_api="blas"):
        stats = _Statistics.of(sums, m, scatter, n_images, people_threads if dim <= SINGLE_THREAD_MAX_DIM else 1)
        return _run_em(mean, s_mu, s_eps, stats, max_iter, tol, ridge, em, accelerate)


def _run_em(
    mean: np.ndarray,
    s_mu: np.ndarray,
    s_eps: np.ndarray,
    stats: _Statistics,
    max_iter: int,
    tol: float,
    ridge: float,
    em: str,
    accelerate: str,
) -> JointBayesianModel:
    """The EM iterations and the final A, G (the arguments are ``fit_joint_bayesian``'s set-up).

    ``iterations`` counts EM steps (a SQUAREM cycle is three); ``tol`` applies to the change
    of S_eps over one step or one cycle.
    """
    expand = accelerate == "px" and em == "posterior"

    def step(mu: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray, Optional[float]]:
        new_mu, new_eps, loglik = _em_step(mu, eps, stats, em, expand, likelihood=accelerate == "squarem")
        return new_mu, _add_ridge(new_eps, ridge), loglik

    iterations, converged = 0, False
    while iterations < max_iter:
        if accelerate == "squarem" and em == "posterior" and iterations + 3 <= max_iter:
            new_mu, new_eps, used = _squarem_cycle(step, s_mu, s_eps)
        else:
            new_mu, new_eps, _ = step(s_mu, s_eps)
            used = 1
        iterations += used
        change = np.linalg.norm(new_eps - s_eps) / np.linalg.norm(s_eps)
        s_mu, s_eps = new_mu, new_eps
        if change < tol:
            converged = True
            break

    lam, v = _generalised_eigh(s_mu, s_eps, stats.n_images, stats.n_people)
    g = -(v * (lam / (1.0 + 2.0 * lam))) @ v.T
    a = -(v * (lam**2 / ((1.0 + lam) * (1.0 + 2.0 * lam)))) @ v.T
    return JointBayesianModel(
        mean=mean, S_mu=s_mu, S_eps=s_eps, A=a, G=g, iterations=iterations, converged=converged
    )


def _psd(c: np.ndarray) -> np.ndarray:
    """The nearest positive semi-definite matrix (negative eigenvalues set to zero)."""
    eig, vec = np.linalg.eigh(_symmetric(c))
    return _symmetric((vec * np.clip(eig, 0.0, None)) @ vec.T)


def _squarem_cycle(
    step: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, float]],
    s_mu: np.ndarray,
    s_eps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One SQUAREM cycle (Varadhan and Roland 2008, scheme S3) of the exact EM.

    EM creeps along directions with little identity variance (each step removes a constant
    fraction of the remaining error); SQUAREM extrapolates from two EM steps along the
    observed path and takes one EM step from there. The extrapolated point is used only
    when it is a valid model (S_eps positive definite; S_mu is clipped to semi-definite) and
    its likelihood is at least that after the first step; otherwise the cycle returns the
    plain second EM step. Returns (S_mu, S_eps, EM steps spent).
    """
    mu1, eps1, _ = step(s_mu, s_eps)
    mu2, eps2, loglik1 = step(mu1, eps1)
    r_mu, r_eps = mu1 - s_mu, eps1 - s_eps
    v_mu, v_eps = mu2 - 2.0 * mu1 + s_mu, eps2 - 2.0 * eps1 + s_eps
    v_norm = np.sqrt(np.sum(v_mu**2) + np.sum(v_eps**2))
    if v_norm == 0.0:
        return mu2, eps2, 2
    alpha = min(-np.sqrt(np.sum(r_mu**2) + np.sum(r_eps**2)) / v_norm, -1.0)
    mu_x = _psd(s_mu - 2.0 * alpha * r_mu + alpha**2 * v_mu)
    eps_x = _symmetric(s_eps - 2.0 * alpha * r_eps + alpha**2 * v_eps)
    try:
        mu3, eps3, loglik_x = step(mu_x, eps_x)
    except (ValueError, np.linalg.LinAlgError):  # eps_x is not positive definite
        return mu2, eps2, 2
    if not np.isfinite(loglik_x) or loglik_x < loglik1:
        return mu2, eps2, 3
    return mu3, eps3, 3


@dataclass
class JointBayesianConfig(VerifierConfig):
    """Joint Bayesian verifier settings.

    pca_dim: None (no PCA) by default so the verifier is usable on any features; the DeepID2
      paper's setting is 180 (set by its method config), and a PCA is the usual cure for a
      singular within-person covariance.
    pca_whiten: off, as in the paper.
    em: which M-step. "posterior" (default) is exact EM for the model: the second moments
      include the posterior covariance of mu, and it starts from moment (unbiased) estimates.
      "point" is the update as the paper and METHODS.md write it and the public
      implementation codes it: the covariances of the point estimates mu_hat, eps_hat, from
      the raw between/within covariances. The point update drops a positive term from S_mu
      every iteration, so with few images per person (LFW: about 4 per training identity) S_mu
      shrinks as it runs and accuracy falls with the iteration count (a test shows it);
      exact EM does not. Keep "point" to reproduce the public implementation.
    max_iter, tol: EM stops after max_iter iterations or when the relative Frobenius change of
      S_eps falls below tol. 1e-4: PX-EM then stops after 10 steps on the benchmark's 2,000
      people x 180 dims and 20-27 on LFW View 2's training folds (synthetic features), within
      a few log-likelihood units of its 400-step fit.
      The fitted model's ``converged`` flag says which ending happened.
    accelerate: "px" (default): parameter-expanded EM steps for the exact EM (a higher
      likelihood than plain EM reaches at all, in fewer steps; see the module docstring).
      "squarem": SQUAREM extrapolation of plain steps, each kept only when its likelihood does
      not drop: the default until PX-EM, kept so earlier records (``accelerate: true``) can
      be reproduced. "none": plain EM steps. ``em="point"`` always runs plain steps.
      Measured on View 1 (the tuning split; DeepID2 + BatchNorm, 1,100 steps, hold-out 0.3,
      PCA 64): px 88.20% / AUC 0.9503 / EER 11.80%, squarem 87.60% / 0.9493 / 12.00%.
    ridge: adds ridge * trace(S_eps) / dim to S_eps's diagonal. 1e-3 by default here (the
      function's own default is 0): a briefly trained net's features can leave the
      within-person covariance rank-deficient even after PCA (collinear units: measured on LFW
      fold 1, 200-step DeepID2 and DeepID2+ runs gave S_eps of rank 177 of 180), and a run must
      not fail at the verifier after its training. 0 = the unregularised model; a singular
      S_eps is then an error that says what to set.
    """

    name: str = "joint_bayesian"
    pca_dim: Optional[int] = ranged(None, ge=1)
    pca_whiten: bool = False
    em: str = one_of("posterior", *EM_UPDATES)
    max_iter: int = ranged(100, ge=1)
    tol: float = ranged(1e-4, gt=0)
    accelerate: str = one_of("px", *ACCELERATIONS)
    ridge: float = ranged(1e-3, ge=0)


class JointBayesianVerifier(ProjectedVerifier):
    """Joint Bayesian log-likelihood ratio on (optionally PCA-projected) features."""

    def __init__(
        self,
        pca_dim: Optional[int] = None,
        pca_whiten: bool = False,
        em: str = "posterior",
        max_iter: int = 100,
        tol: float = 1e-4,
        accelerate: str = "px",
        ridge: float = 0.0,
    ) -> None:
        super().__init__(pca_dim=pca_dim, pca_whiten=pca_whiten)
        if em not in EM_UPDATES:
            raise ConfigError(f"verifier.em={em!r}: use one of {', '.join(EM_UPDATES)}")
        if accelerate not in ACCELERATIONS:
            raise ConfigError(
                f"verifier.accelerate={accelerate!r}: use one of {', '.join(ACCELERATIONS)} (records made before "
                "PX-EM say true, which meant squarem)"
            )
        self.em = em
        self.max_iter = max_iter
        self.tol = tol
        self.accelerate = accelerate
        self.ridge = ridge
        self.model: Optional[JointBayesianModel] = None

    @property
    def _fitted(self) -> JointBayesianModel:
        if self.model is None:
            raise RuntimeError("JointBayesianVerifier: call fit (or load_state) before scoring")
        return self.model

    def fit_projected(self, z: np.ndarray, labels: np.ndarray) -> None:
        self.model = fit_joint_bayesian(
            z, labels, max_iter=self.max_iter, tol=self.tol, ridge=self.ridge, em=self.em, accelerate=self.accelerate
        )

    def score_projected(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._fitted.score(a, b)

    def score_matrix_projected(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._fitted.score_matrix(a, b)

    def state_projected(self) -> dict[str, np.ndarray]:
        model = self._fitted
        return {
            "mean": model.mean,
            "A": model.A,
            "G": model.G,
            "S_mu": model.S_mu,
            "S_eps": model.S_eps,
            "iterations": np.asarray(model.iterations, dtype=np.int64),
            "converged": np.asarray(model.converged, dtype=bool),
        }

    def load_state_projected(self, state: dict[str, np.ndarray]) -> None:
        self.model = JointBayesianModel(
            mean=np.asarray(state["mean"], dtype=np.float64),
            S_mu=np.asarray(state["S_mu"], dtype=np.float64),
            S_eps=np.asarray(state["S_eps"], dtype=np.float64),
            A=np.asarray(state["A"], dtype=np.float64),
            G=np.asarray(state["G"], dtype=np.float64),
            iterations=int(state["iterations"]),
            converged=bool(state["converged"]),
        )
