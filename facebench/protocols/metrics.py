"""Verification metrics exactly as PROTOCOLS.md pins them for pair-based protocols (LFW).

Published LFW numbers disagree partly because every tool picks its threshold differently
(fixed grids, argmax TPR-FPR, population std). This module is the one default definition:
the threshold maximising training accuracy, searched exactly over the sorted training scores;
accuracy on the held-out fold; mean and standard error over folds; and a ROC pooled over
the test folds with AUC, EER and TAR at fixed FARs, flagged when too few impostor pairs
support a FAR. Named variants that reproduce other tools live elsewhere.

Convention everywhere: a higher score means "more likely the same person", and a pair is
predicted "same" iff ``score >= threshold``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_curve

DEFAULT_FARS: tuple[float, ...] = (1e-2, 1e-3)
# Fewer expected false accepts than this at a FAR and the TAR there is mostly noise.
MIN_EXPECTED_FALSE_ACCEPTS = 10


def _check_scores(scores: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Validate once here so every metric fails loudly on NaNs or misaligned labels.

    A NaN score would silently sort to the end and count as a confident "same".
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same)
    if s.ndim != 1 or y.ndim != 1 or len(s) != len(y):
        raise ValueError(f"scores and labels must be 1-D of equal length, got shapes {s.shape} and {y.shape}")
    if len(s) == 0:
        raise ValueError("no pairs: cannot evaluate an empty set of scores")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} NaN scores: fix the feature extraction or the verifier")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be boolean or 0/1 (1 = same person)")
        y = y.astype(bool)
    return s, y


def best_threshold(scores: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool]) -> float:
    """The threshold maximising accuracy on these (training) scores, found exactly.

    Only the order of the scores matters, so the accuracy of every candidate (every distinct
    score, plus ``+inf`` meaning "all different") follows from cumulative counts over the
    sorted distinct scores in O(n log n); a fixed grid would miss the optimum between grid
    points and make the result depend on the score scale.

    Which value is returned (deterministic, documented reading):

    * Ties between candidates: when several candidates reach the maximal accuracy, the
      lower median of them (in ascending score order) is chosen, so neither the "accept more"
      nor the "reject more" end is favoured.
    * Within the chosen candidate: candidate ``u_j`` classifies the training pairs exactly as
      any threshold in ``(u_{j-1}, u_j]`` does (``u_{j-1}`` the next lower distinct score).
      The midpoint of that interval is returned, because it keeps a margin on both sides for
      unseen test scores; it has the same training accuracy as ``u_j``. When ``u_j`` is the
      lowest training score (everything "same") there is no lower score and ``u_j`` itself is
      returned; when the winner is ``+inf`` (everything "different") ``+inf`` is returned.
      Where ``u_{j-1}`` and ``u_j`` are adjacent floats the midpoint would round onto
      ``u_{j-1}``, and ``u_j`` is returned instead.
    """
    s, y = _check_scores(scores, same)
    distinct, inverse = np.unique(s, return_inverse=True)  # ascending
    m = len(distinct)
    pos = np.bincount(inverse[y], minlength=m)
    neg = np.bincount(inverse[~y], minlength=m)
    # Candidate j < m is threshold distinct[j]; candidate m is +inf.
    true_accepts = np.concatenate([np.cumsum(pos[::-1])[::-1], [0]])  # positives with score >= t
    true_rejects = np.concatenate([[0], np.cumsum(neg)])  # negatives with score < t
    correct = true_accepts + true_rejects
    winners = np.flatnonzero(correct == correct.max())
    j = int(winners[(len(winners) - 1) // 2])
    if j == m:
        return math.inf
    upper = float(distinct[j])
    if j == 0:
        return upper
    lower = float(distinct[j - 1])
    mid = lower / 2 + upper / 2  # halves first: no overflow near the float limits
    return mid if lower < mid <= upper else upper


def accuracy(scores: np.ndarray | Sequence[float], same: np.ndarray | Sequence[bool], threshold: float) -> float:
    """Fraction of pairs classified correctly when "same" iff ``score >= threshold``."""
    s, y = _check_scores(scores, same)
    return float(np.mean((s >= threshold) == y))


@dataclass
class FoldResult:
    """One test fold: the threshold fitted on its training folds and the accuracy it earns.

    The test scores and labels are kept so the ROC can be pooled over folds afterwards.
    """

    name: str
    threshold: float
    accuracy: float
    n_pairs: int
    scores: np.ndarray
    same: np.ndarray


@dataclass
class TarAtFar:
    """TAR at one FAR on the pooled ROC, with how much evidence supports it.

    ``expected_false_accepts`` = impostor pairs x FAR; below ``MIN_EXPECTED_FALSE_ACCEPTS``
    the TAR hinges on a handful of impostor pairs and ``low_confidence`` is set.
    """

    far: float
    tar: float
    threshold: float
    expected_false_accepts: float
    low_confidence: bool


def _json_float(x: float) -> float | None:
    """JSON has no NaN/Infinity: non-finite values (SE of one fold, a +inf threshold) become null."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class VerificationSummary:
    """Everything the official pair protocol reports for one evaluated model.

    ``fpr``, ``tpr`` and ``roc_thresholds`` are the exact pooled ROC (every distinct score,
    ``sklearn.metrics.roc_curve`` with ``drop_intermediate=False``); AUC, EER and TAR@FAR are
    computed from them. Only :meth:`to_dict` down-samples the curve, for storage.
    """

    folds: list[FoldResult]
    mean_accuracy: float
    sd_accuracy: float
    se_accuracy: float
    fpr: np.ndarray
    tpr: np.ndarray
    roc_thresholds: np.ndarray
    auc: float
    eer: float
    tar_at_far: list[TarAtFar]
    n_genuine: int
    n_impostor: int

    def fold_table(self) -> pd.DataFrame:
        """One row per test fold, for reports and for checking that no fold is an outlier."""
        return pd.DataFrame(
            {
                "fold": [f.name for f in self.folds],
                "threshold": [f.threshold for f in self.folds],
                "accuracy": [f.accuracy for f in self.folds],
                "n_pairs": [f.n_pairs for f in self.folds],
                "n_genuine": [int(f.same.sum()) for f in self.folds],
                "n_impostor": [int((~f.same).sum()) for f in self.folds],
            }
        )

    def roc_points(self, max_points: int = 200) -> np.ndarray:
        """Indices of at most about ``max_points`` exact ROC points, log-spaced in FAR.

        Face verification is read at low FAR, so points are chosen per FAR on a log grid from
        the smallest non-zero FPR to 1; each kept point is the exact operating point
        "largest TPR with FPR <= that FAR", so a stored curve reproduces TAR@FAR at its grid
        FARs. The origin and the (1, 1) end are always kept.
        """
        nonzero = self.fpr[self.fpr > 0]
        if len(nonzero) == 0:
            return np.arange(len(self.fpr))
        grid = np.concatenate([[0.0], np.geomspace(nonzero.min(), 1.0, max(max_points - 1, 1))])
        idx = np.searchsorted(self.fpr, grid, side="right") - 1
        return np.unique(np.concatenate([[0], idx, [len(self.fpr) - 1]]))

    def unit_rows(self) -> list[dict]:
        """Each evaluated fold's threshold, accuracy and pair count, JSON-safe."""
        return [
            {"name": f.name, "threshold": _json_float(f.threshold), "accuracy": _json_float(f.accuracy),
             "n_pairs": int(f.n_pairs)}
            for f in self.folds
        ]

    def to_dict(self, max_roc_points: int = 200) -> dict:
        """The summary metrics, JSON-safe: plain floats/ints/lists, non-finite floats as ``None``
        (per-fold values: :meth:`unit_rows`).

        Per-fold test scores are left out (they can be thousands of numbers per fold); the
        ROC is down-sampled with :meth:`roc_points`, while ``auc`` and ``eer`` stay the values
        computed on the exact curve.
        """
        keep = self.roc_points(max_roc_points)
        return {
            "mean_accuracy": _json_float(self.mean_accuracy),
            "sd_accuracy": _json_float(self.sd_accuracy),
            "se_accuracy": _json_float(self.se_accuracy),
            "auc": _json_float(self.auc),
            "eer": _json_float(self.eer),
            "n_genuine": int(self.n_genuine),
            "n_impostor": int(self.n_impostor),
            "tar_at_far": [
                {
                    "far": _json_float(t.far),
                    "tar": _json_float(t.tar),
                    "threshold": _json_float(t.threshold),
                    "expected_false_accepts": _json_float(t.expected_false_accepts),
                    "low_confidence": bool(t.low_confidence),
                }
                for t in self.tar_at_far
            ],
            "roc": {
                "fpr": [_json_float(v) for v in self.fpr[keep]],
                "tpr": [_json_float(v) for v in self.tpr[keep]],
                "thresholds": [_json_float(v) for v in self.roc_thresholds[keep]],
                "n_exact_points": int(len(self.fpr)),
            },
        }


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate: the FPR where FPR = FNR = 1 - TPR, interpolated on the ROC segments.

    Along an exact ROC every point moves FPR up or FNR down, so FPR - FNR is strictly
    increasing and ``np.interp`` finds its zero crossing.
    """
    return float(np.interp(0.0, fpr - (1.0 - tpr), fpr))


def _tar_at_far(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray, far: float, n_impostor: int) -> TarAtFar:
    """The largest TPR whose FPR does not exceed ``far`` (FPR and TPR rise along the curve)."""
    i = int(np.searchsorted(fpr, far, side="right")) - 1
    expected = n_impostor * far
    return TarAtFar(
        far=far,
        tar=float(tpr[i]),
        threshold=float(thresholds[i]),
        expected_false_accepts=expected,
        low_confidence=expected < MIN_EXPECTED_FALSE_ACCEPTS,
    )


def evaluate_pair_folds(
    per_fold: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    fars: Sequence[float] = DEFAULT_FARS,
) -> VerificationSummary:
    """Official pair-protocol scoring from per-fold training and test scores.

    Each item is ``(name, train_scores, train_same, test_scores, test_same)``: the threshold is
    fitted on the training scores only (for LFW View 2, the other 9 folds) and accuracy is
    measured on the test scores. The spread is the standard error SE = sd(ddof=1)/sqrt(n_folds)
    that LFW asks for; with a single fold (LFW View 1) sd and SE are undefined and are NaN.

    The ROC, AUC, EER and TAR@FAR are computed on the test scores of all folds pooled. Pooling
    assumes the folds' scores are on comparable scales; that holds for one fixed model and
    similarity, but not when a verifier fitted per fold (e.g. a per-fold model in the
    no-outside-data regime, or a per-fold PCA) produces scores with a different offset or
    spread each fold; then the pooled ROC mixes scales and understates per-fold quality.
    A TAR is flagged low-confidence when pooled impostor pairs x FAR < 10: LFW View 2 pools
    3,000 impostor test pairs, so TAR@1e-3 rests on about 3 false accepts.
    """
    if not per_fold:
        raise ValueError("no folds to evaluate")
    folds = []
    for name, train_scores, train_same, test_scores, test_same in per_fold:
        threshold = best_threshold(train_scores, train_same)
        s, y = _check_scores(test_scores, test_same)
        folds.append(FoldResult(name, threshold, accuracy(s, y, threshold), len(s), s, y))
    accs = np.array([f.accuracy for f in folds])
    n = len(accs)
    sd = float(np.std(accs, ddof=1)) if n > 1 else math.nan
    se = sd / math.sqrt(n)

    scores = np.concatenate([f.scores for f in folds])
    same = np.concatenate([f.same for f in folds])
    n_genuine = int(same.sum())
    n_impostor = len(same) - n_genuine
    if n_genuine == 0 or n_impostor == 0:
        raise ValueError(
            f"the pooled test folds hold {n_genuine} genuine and {n_impostor} impostor pairs: "
            "a ROC needs both"
        )
    fpr, tpr, thresholds = roc_curve(same, scores, drop_intermediate=False)
    return VerificationSummary(
        folds=folds,
        mean_accuracy=float(accs.mean()),
        sd_accuracy=sd,
        se_accuracy=se,
        fpr=fpr,
        tpr=tpr,
        roc_thresholds=thresholds,
        auc=float(sk_auc(fpr, tpr)),
        eer=_eer(fpr, tpr),
        tar_at_far=[_tar_at_far(fpr, tpr, thresholds, float(far), n_impostor) for far in fars],
        n_genuine=n_genuine,
        n_impostor=n_impostor,
    )
