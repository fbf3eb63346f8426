"""Workload ``jb_fit``: the Joint Bayesian EM fit, vectorised plugin vs per-person loop.

Data: 2,000 people x 180 dims with 2-20 images each (uniform; about 22,000 vectors), drawn
from the Joint Bayesian model itself (identity part plus within-person part, each with its
own random covariance), so the EM converges as it does on real features.

Ours is the fit a pipeline runs (``fit_joint_bayesian`` with its defaults: exact EM with
parameter-expanded steps); it converges after k steps. The baseline
(:mod:`facebench_plugins.deepid2.bench.naive_jb`) runs the same algorithm, PX-EM, person by person for a fixed
number of steps: k in a full run, under ``--quick`` only a few. The ratio is per EM step (each
side's time divided by its steps; ours' includes its one-off set-up, which favours the
baseline). Agreement is checked at equal steps: ours refitted for exactly as many steps as the
baseline ran. The baseline gets no warm-up call: each call takes seconds
to minutes, and ours' warm-up has already loaded and warmed numpy and scipy.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from facebench_plugins.deepid2.bench.naive_jb import naive_joint_bayesian_fit
from facebench.bench.report import Row, Target, skipped
from facebench.bench.runner import BenchContext
from facebench.bench.timing import measure, watch_load

PEOPLE = 2000
DIM = 180
COUNTS = (2, 20)
QUICK_NAIVE_ITERATIONS = 3


def model_data(seed: int, people: int = PEOPLE, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    """Features x = mu_person + eps drawn with random (well-conditioned) covariances, and labels."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(COUNTS[0], COUNTS[1] + 1, size=people)
    labels = np.repeat(np.arange(people), counts)
    mix_mu = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    mix_eps = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    mu = rng.normal(size=(people, dim)) @ mix_mu.T
    eps = 0.7 * rng.normal(size=(len(labels), dim)) @ mix_eps.T
    return mu[labels] + eps, labels


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to the largest entry of b (entries near 0 make per-entry ratios meaningless)."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def run(ctx: BenchContext) -> list[Row]:
    try:
        from facebench_plugins.deepid2.joint_bayesian import fit_joint_bayesian
    except ImportError as exc:
        return [skipped("jb_fit", "-", f"not available: the Joint Bayesian plugin cannot be imported ({exc})")]

    x, labels = model_data(ctx.seed)
    fits: dict[str, Any] = {}

    def fit(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        return lambda: fits.__setitem__(name, fn())

    with watch_load() as load:
        ours_t = measure({"ours": fit("ours", lambda: fit_joint_bayesian(x, labels))}, ctx.pick(5, 2), 1)["ours"]
    ours = fits["ours"]
    k = ours.iterations
    details = {"people": PEOPLE, "dim": DIM, "vectors": len(x), "counts": list(COUNTS), "ours_iterations": k,
               "ours_converged": ours.converged}
    rows = [Row("jb_fit", f"{PEOPLE} people x {DIM} dims: time", ours_t, ratio_def="-",
                target=Target("<", 1.0, on="ours", unit="s"), load=load, details=details)]

    n = ctx.pick(k, min(k, QUICK_NAIVE_ITERATIONS))
    with watch_load() as load:
        naive_fit = fit("naive", lambda: naive_joint_bayesian_fit(x, labels, n, expand=True))
        naive_t = measure({"naive": naive_fit}, ctx.pick(2, 1), 0)["naive"]
    naive = fits["naive"]
    same_iterations = fit_joint_bayesian(x, labels, max_iter=n, tol=0.0)
    row = Row("jb_fit", f"{PEOPLE} people x {DIM} dims: vs naive", ours_t, naive_t,
              f"per-person loop PX-EM (facebench_plugins.deepid2.bench.naive_jb), {n} iterations",
              (naive_t.median / n) / (ours_t.median / k), "naive / ours time per EM iteration", Target(">=", 100), load,
              details={**details, "naive_iterations": n,
                       **{f"max_rel_diff_{k}": _max_rel_diff(getattr(same_iterations, k), getattr(naive, k))
                          for k in ("S_mu", "S_eps", "A", "G")}})
    diff = {k: row.details[f"max_rel_diff_{k}"] for k in ("S_mu", "S_eps", "A", "G")}
    row.notes.append(
        f"results at {n} iterations, max |diff| / max |entry|: A {diff['A']:.1e}, G {diff['G']:.1e}, "
        f"S_mu {diff['S_mu']:.1e}, S_eps {diff['S_eps']:.1e} (the covariances say whether the EMs agree; A and G "
        "are derived through matrix inverses, differently on each side)"
    )
    row.notes.append(f"ours converged in {k} PX-EM steps; agreement is checked against ours run for {n} steps, "
                     "like the baseline")
    rows.append(row)
    return rows
