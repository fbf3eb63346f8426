"""BLUFR's two figures from score matrices: verification rate at a FAR and open-set DIR.

BLUFR scores every test image against every other one (about 157,000 genuine and 47 million
impostor pairs per trial) and reads the ROC at FAR = 0.1%, where only about 47,000 impostor
pairs may be accepted; a pair-list evaluator would build 47 million Python tuples. Here the
scores come a block of rows at a time from ``score_matrix``, the upper triangle (i < j, so no
self-pairs and each pair once) is split into genuine and impostor scores by row slices,
and thresholds are order statistics of the impostor scores, read from one in-place float32
sort: no Python loop over pairs.

Reading of TAR at a FAR (the same as :mod:`facebench.protocols.metrics` uses for LFW): the
largest TAR whose false accept rate does not exceed that FAR. Concretely, with
k = floor(FAR x impostors), pairs scoring strictly above the (k+1)-th largest impostor score
are accepted, so at most k impostors are (fewer when scores tie). Scores are kept as float32
(47 million of them take 190 MB instead of 380); genuine and impostor scores are rounded
alike, so their comparison is consistent.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

#: ``score(a, b)`` -> (len(a), len(b)) scores, higher = more likely the same person.
ScoreMatrix = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Score-block budget: about 128 MB of float64 per block of rows.
BLOCK_ELEMENTS = 1 << 24


def _check_finite(block: np.ndarray) -> None:
    if not np.isfinite(block).all():
        raise ValueError(
            f"{int((~np.isfinite(block)).sum())} non-finite scores: fix the feature extraction or the verifier"
        )


def all_pair_scores(
    score: ScoreMatrix, features: np.ndarray, labels: np.ndarray, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) float32 scores of every unordered pair i < j of ``features``.

    The images are first ordered by label (the set of pairs does not change), so that in row i
    the columns j > i are one run of genuine pairs, up to the end of i's person, followed by
    one run of impostor pairs: each row's two runs are copied as slices, with no pair masks.
    Rows are scored in blocks against the columns from the block's first row on, so the lower
    triangle is never computed; the output arrays are allocated once at their exact sizes.
    """
    order = np.argsort(np.asarray(labels), kind="stable")
    labels = np.asarray(labels)[order]
    features = features[order]
    n = len(labels)
    person_end = np.searchsorted(labels, labels, side="right")
    n_genuine = int((person_end - np.arange(n) - 1).sum())
    n_impostor = n * (n - 1) // 2 - n_genuine
    genuine = np.empty(n_genuine, dtype=np.float32)
    impostor = np.empty(n_impostor, dtype=np.float32)
    g = i = 0
    start = 0
    while start < n:
        rows = max(1, block_elements // (n - start))
        stop = min(n, start + rows)
        block = np.asarray(score(features[start:stop], features[start:]))
        for row in range(stop - start):
            first, end = start + row + 1, person_end[start + row]
            genuine[g : g + end - first] = block[row, first - start : end - start]
            impostor[i : i + n - end] = block[row, end - start :]
            g, i = g + end - first, i + n - end
        start = stop
    _check_finite(genuine)
    _check_finite(impostor)
    return genuine, impostor


def thresholds_at_fars(impostor: np.ndarray, fars: np.ndarray) -> np.ndarray:
    """For each FAR, the (k+1)-th largest impostor score, k = floor(FAR x impostors).

    Accepting scores strictly above it accepts at most k impostors. Where k covers every
    impostor the threshold is -inf (accept everything). ``impostor`` is sorted in place:
    numpy's vectorised float32 sort of 47 million scores (under a second) is cheaper than
    partitioning them at every FAR of a ROC grid.
    """
    n = len(impostor)
    if n == 0:
        raise ValueError("no impostor pairs: the test set holds a single identity")
    k = np.floor(np.asarray(fars, dtype=np.float64) * n + 1e-9).astype(np.int64)
    positions = n - 1 - k  # ascending position of the (k+1)-th largest
    impostor.sort()
    return np.where(positions >= 0, impostor[np.clip(positions, 0, None)].astype(np.float64), -np.inf)


def accept_rates(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``scores`` strictly above each threshold."""
    if len(scores) == 0:
        raise ValueError("no genuine pairs: every test identity has a single image")
    ordered = np.sort(scores)
    return 1.0 - np.searchsorted(ordered, thresholds.astype(ordered.dtype), side="right") / len(ordered)


def open_set_identification(
    probe_gallery: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray, far: float
) -> tuple[float, float, int, int]:
    """Detection and identification rate at rank 1 and ``far``: (DIR, threshold, genuine probes, impostor probes).

    Genuine probes are those whose identity is in the gallery, impostor probes the rest. The
    threshold is chosen on the impostor probes' best gallery scores: the (k+1)-th largest, k =
    floor(far x impostor probes), so at most a fraction ``far`` of them is (wrongly) detected.
    A genuine probe counts when its best-scoring gallery image is of its identity (rank 1;
    the first of tied best scores) and that score is above the threshold.
    """
    scores = np.asarray(probe_gallery)
    _check_finite(scores)
    genuine = np.isin(probe_labels, gallery_labels)
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(len(scores)), best].astype(np.float32)
    impostor_best = best_score[~genuine].copy()
    if genuine.sum() == 0:
        raise ValueError("no genuine probes: no probe's identity is in the gallery")
    threshold = float(thresholds_at_fars(impostor_best, np.array([far]))[0])
    hit = (np.asarray(gallery_labels)[best] == probe_labels) & (best_score > np.float32(threshold))
    return float(hit[genuine].mean()), threshold, int(genuine.sum()), int((~genuine).sum())
