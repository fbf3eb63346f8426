"""Telling a collapsed training from a weak one, from what every record already holds.

A net that collapsed (every face mapped to about the same feature; a softmax that never left
the uniform guess) still yields a verification number, and a leaderboard that ranks it next to
real results misleads. The signs, each cheap and loss-independent where possible:

- pair accuracy at chance on the unit's test fold (at most ``CHANCE_ACCURACY``: 600 LFW test
  pairs give a standard error of about 2 points at 50%, so 55% is 2.5 SE above a coin);
- a training accuracy at chance (at most twice 1 / classes) or an identification loss still
  near ln(classes), the value of the uniform guess (at least ``UNIFORM_LOSS_SHARE`` of it);
- features that do not vary across images (every unit's spread below ``CONSTANT_SPREAD`` of
  the features' magnitude).

Constant features collapse by themselves; otherwise a unit counts as collapsed when its test
accuracy is at chance and a training sign agrees, or, where the protocol reports no pair
accuracy, when both training signs agree. The record keeps the signs either way.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

CHANCE_ACCURACY = 0.55
UNIFORM_LOSS_SHARE = 0.9
CONSTANT_SPREAD = 1e-6


def features_constant(features: np.ndarray) -> bool:
    """True when no feature unit varies across the images (relative to the features' size)."""
    x = np.asarray(features, dtype=np.float64)
    scale = float(np.abs(x).max()) if x.size else 0.0
    return bool(x.size == 0 or float(x.std(axis=0).max()) <= CONSTANT_SPREAD * max(scale, 1e-12))


def unit_signs(row: dict[str, Any]) -> dict[str, Optional[str]]:
    """The collapse signs of one trained unit's record row, each None or a sentence."""
    metrics = row.get("final_train_metrics") or {}
    classes = row.get("train_identities") or 0
    signs: dict[str, Optional[str]] = {"test": None, "train_accuracy": None, "uniform_loss": None, "features": None}
    accuracy = row.get("accuracy")
    if isinstance(accuracy, (int, float)) and accuracy <= CHANCE_ACCURACY:
        signs["test"] = f"test pair accuracy {100 * accuracy:.1f}% is at chance (<= {100 * CHANCE_ACCURACY:.0f}%)"
    train_acc = metrics.get("train_accuracy")
    if classes >= 2 and isinstance(train_acc, (int, float)) and train_acc <= 2.0 / classes:
        signs["train_accuracy"] = f"training accuracy {100 * train_acc:.2f}% is at chance (1/{classes} classes)"
    ident = metrics.get("identification")
    if classes >= 2 and isinstance(ident, (int, float)) and ident >= UNIFORM_LOSS_SHARE * math.log(classes):
        signs["uniform_loss"] = (
            f"final identification loss {ident:.3f} is near ln({classes}) = {math.log(classes):.3f}, the uniform guess"
        )
    if row.get("features_constant"):
        signs["features"] = "the features do not vary across images"
    return signs


def detect_collapse(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the trained units' record rows: whether any collapsed, which, and every sign seen."""
    found: dict[str, list[str]] = {}
    collapsed_units = []
    for row in rows:
        if not row.get("train_steps"):
            continue
        signs = unit_signs(row)
        seen = [s for s in signs.values() if s]
        if seen:
            found[row["name"]] = seen
        training = signs["train_accuracy"] or signs["uniform_loss"]
        if signs["features"] or (signs["test"] and training) or (
            "accuracy" not in row and signs["train_accuracy"] and signs["uniform_loss"]
        ):
            collapsed_units.append(row["name"])
    return {"collapsed": bool(collapsed_units), "collapsed_units": collapsed_units, "signs": found}
