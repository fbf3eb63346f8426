"""Has a training budget let an entry converge? Read off its learning curves
(facebench.learning_curve): an entry whose validation accuracy, averaged over its folds and
seeds, still rose by more than ``STILL_IMPROVING`` in the last quarter of the budget is flagged,
since its number would move with a longer budget. Kept apart from the measuring so that the
leaderboard reads records without importing torch.
"""
from __future__ import annotations

import numpy as np

#: Gain in validation accuracy over the last quarter of the budget that marks an entry as not converged.
STILL_IMPROVING = 0.01


def mean_curve(curves: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Validation accuracy at each budget fraction, averaged over ``curves`` (folds, seeds).

    One fold's curve is scored on ``evaluation.curve_pairs`` pairs (500: a standard error of
    about 1.6 points), so the 1-point test is meant for an entry's curve averaged over its folds
    and seeds; asked of every fold alone it flags nearly every entry by chance."""
    points: dict[float, list[float]] = {}
    for curve in curves:
        for point in curve or []:
            points.setdefault(float(point["fraction"]), []).append(float(point["val_accuracy"]))
    return [{"fraction": f, "val_accuracy": float(np.mean(v))} for f, v in sorted(points.items())]


def still_improving(curve: list[dict[str, float]]) -> bool:
    """Whether validation accuracy rose by more than ``STILL_IMPROVING`` over the last quarter."""
    by_fraction = {p["fraction"]: p["val_accuracy"] for p in curve}
    if 0.75 not in by_fraction or 1.0 not in by_fraction:
        return False
    return by_fraction[1.0] - by_fraction[0.75] > STILL_IMPROVING
