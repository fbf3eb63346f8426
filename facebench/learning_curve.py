"""A learning curve on held-out training people: has a training budget let a method converge?

A fair comparison gives every entry one budget, and a budget is only fair if each entry has
converged within it. So at 25, 50, 75 and 100% of the steps the network's features of training
people it never trains on (``evaluation.curve_holdout``) are scored on fixed pairs among them:
cosine similarity, accuracy at the best threshold on those pairs, and AUC. The test fold is never
touched. Whether an entry's curve says it had converged is facebench.convergence's question.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from facebench.components import FaceData
from facebench.features import extract_features
from facebench.splits import draw_pairs

FRACTIONS = (0.25, 0.5, 0.75, 1.0)

def best_threshold_accuracy(scores: np.ndarray, same: np.ndarray) -> float:
    """The highest pair accuracy any threshold reaches on ``scores`` (higher = same person)."""
    order = np.argsort(-scores, kind="stable")
    same_sorted = same[order]
    # accepting the top k: true accepts = cumsum(same), true rejects = (#different - false accepts)
    accepted_same = np.concatenate([[0], np.cumsum(same_sorted)])
    accepted_diff = np.concatenate([[0], np.cumsum(~same_sorted)])
    correct = accepted_same + (np.count_nonzero(~same) - accepted_diff)
    return float(correct.max() / len(same))


class LearningCurve:
    """Measures the curve while ``facebench.train.train`` runs (its ``on_step`` hook)."""

    def __init__(self, backbone: Any, faces: FaceData, steps: int, pairs: int, seed: int,
                 device: torch.device, batch_size: int) -> None:
        self.backbone = backbone
        self.faces = faces
        self.pairs, self.same = draw_pairs(faces.labels, pairs, np.random.default_rng([seed, 8]))
        self.at = {max(1, math.ceil(f * steps)): f for f in FRACTIONS}
        self.device = device
        self.batch_size = batch_size
        self.points: list[dict[str, float]] = []

    def measure(self, step: int) -> None:
        fraction: Optional[float] = self.at.get(step)
        if fraction is None:
            return
        features = extract_features(self.backbone, self.faces.images, "none", self.batch_size, self.device)
        self.backbone.train()
        unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        scores = (unit[self.pairs[:, 0]] * unit[self.pairs[:, 1]]).sum(1)
        self.points.append({
            "step": step,
            "fraction": fraction,
            "val_accuracy": best_threshold_accuracy(scores, self.same),
            "val_auc": float(roc_auc_score(self.same, scores)),
        })


    def state_dict(self) -> dict[str, torch.Tensor]:
        """The points so far as one tensor (rows: step, fraction, accuracy, AUC), for checkpoints."""
        keys = ("step", "fraction", "val_accuracy", "val_auc")
        return {"points": torch.tensor([[p[k] for k in keys] for p in self.points], dtype=torch.float64).reshape(-1, 4)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.points = [
            {"step": int(step), "fraction": float(fraction), "val_accuracy": float(acc), "val_auc": float(auc)}
            for step, fraction, acc, auc in state["points"].tolist()
        ]
