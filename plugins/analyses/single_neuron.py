"""One neuron as a classifier: the best threshold and direction on one half of the data, scored
on the other half, so a selectivity figure is never measured on the data that tuned it.

Used for identities and for attributes (DeepID2+, Sec. 5: single neurons reach up to 97%
one-vs-rest accuracy). Sets are balanced (as many negatives as positives, drawn at random), so
chance is 50% whatever the class sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NeuronThresholds:
    """Per column of a feature matrix: the threshold, the direction (+1: positive above it,
    -1: positive below it) and the accuracy it reaches on the data it was chosen on."""

    threshold: np.ndarray
    direction: np.ndarray
    accuracy: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.direction > 0, x > self.threshold, x < self.threshold)


def fit_thresholds(x: np.ndarray, positive: np.ndarray) -> NeuronThresholds:
    """Every column's best single threshold, exactly: all cut points between distinct sorted
    values are tried at once from cumulative counts (O(n log n) per column)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n = len(x)
    order = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)
    ys = y[order]
    below_pos = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(ys, axis=0)])  # positives among the k smallest
    below_neg = np.arange(n + 1)[:, None] - below_pos
    # "above the cut is positive": negatives below it and positives above it are right
    up = (below_neg + (y.sum() - below_pos)) / n
    down = 1.0 - up
    valid = np.ones_like(up, dtype=bool)
    valid[1:n] = xs[1:] != xs[:-1]  # a cut between equal values cannot be made
    best_up = np.where(valid, up, -1.0)
    best_down = np.where(valid, down, -1.0)
    use_down = best_down.max(axis=0) > best_up.max(axis=0)
    k = np.where(use_down, best_down.argmax(axis=0), best_up.argmax(axis=0))
    cols = np.arange(x.shape[1])
    lower = np.where(k > 0, xs[np.maximum(k - 1, 0), cols], xs[0] - 1.0)
    upper = np.where(k < n, xs[np.minimum(k, n - 1), cols], xs[-1] + 1.0)
    accuracy = np.where(use_down, best_down[k, cols], best_up[k, cols])
    return NeuronThresholds((lower + upper) / 2.0, np.where(use_down, -1, 1), accuracy)


def balanced_sample(positive_index: np.ndarray, negative_index: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """As many of each class as the smaller has: (indices, is_positive)."""
    m = min(len(positive_index), len(negative_index))
    pos = rng.choice(positive_index, m, replace=False)
    neg = rng.choice(negative_index, m, replace=False)
    return np.concatenate([pos, neg]), np.concatenate([np.ones(m, bool), np.zeros(m, bool)])


@dataclass
class Selectivity:
    """Held-out one-vs-rest accuracy of every column and of the best single one.

    ``per_neuron``: each column's accuracy with its threshold chosen on the other half (mean of
    the two directions of the two-fold split). ``best_neuron`` / ``best_accuracy``: the column that
    scored best on the half it was chosen on, scored on the other half (mean over both halves;
    the column named is the one chosen on the first half)."""

    per_neuron: np.ndarray
    best_neuron: int
    best_accuracy: float
    excitatory: int
    inhibitory: int


def selectivity(x: np.ndarray, positive: np.ndarray, rng: np.random.Generator) -> Selectivity:
    """Two-fold cross-validated single-column accuracies of ``x`` for ``positive``, stratified."""
    y = np.asarray(positive, dtype=bool)
    halves = np.zeros(len(y), dtype=bool)
    for cls in (True, False):
        members = np.flatnonzero(y == cls)
        halves[rng.permutation(members)[: len(members) // 2]] = True
    per_neuron = np.zeros(x.shape[1])
    best_scores, best = [], None
    for chosen_on in (halves, ~halves):
        scored_on = ~chosen_on
        fitted = fit_thresholds(x[chosen_on], y[chosen_on])
        held_out = (fitted.predict(x[scored_on]) == y[scored_on][:, None]).mean(axis=0)
        per_neuron += held_out / 2.0
        pick = int(np.argmax(fitted.accuracy))
        best = pick if best is None else best
        best_scores.append(float(held_out[pick]))
    gap = x[y].mean(axis=0) - x[~y].mean(axis=0)
    spread = np.sqrt((x[y].var(axis=0) + x[~y].var(axis=0)) / 2.0) + 1e-12
    effect = gap / spread
    return Selectivity(per_neuron, int(best), float(np.mean(best_scores)), int(np.argmax(effect)), int(np.argmin(effect)))
