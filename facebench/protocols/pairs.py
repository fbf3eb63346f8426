"""Evaluation of pair-based protocols (LFW View 1 and 2, the synthetic benchmark).

One definition, pinned by PROTOCOLS.md: per evaluated split, the verifier (and its PCA) is fitted
on the images of the training folds' people and the threshold on the training folds' pairs;
accuracy is measured on the test fold only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from facebench.components import Protocol, Verifier
from facebench.config import ConfigError
from facebench.protocols.benchmark import EvalUnit, PairsBenchmark
from facebench.protocols.metrics import evaluate_pair_folds


@dataclass
class PairOutcome:
    name: str
    train_scores: np.ndarray
    train_same: np.ndarray
    test_scores: np.ndarray
    test_same: np.ndarray


def check_fold_numbers(folds: Optional[list[int]], n_folds: int, key: str) -> None:
    """Refuse test-fold numbers the protocol does not have, before anything is decoded."""
    bad = [f for f in folds or [] if not 1 <= f <= n_folds]
    if bad:
        raise ConfigError(f"{key}={list(folds or [])}: no test fold {bad}; this protocol's folds are 1..{n_folds}")


def select_units(bench: PairsBenchmark, folds: Optional[list[int]], key: str) -> list[EvalUnit]:
    """The splits to run; ``folds`` are 1-based test-fold numbers (LFW's own numbering)."""
    if not folds:
        return bench.units
    by_test = {u.test + 1: u for u in bench.units}
    bad = [f for f in folds if f not in by_test]
    if bad:
        raise ConfigError(f"{key}={list(folds)}: no test fold {bad}; this protocol's folds are {sorted(by_test)}")
    return [by_test[f] for f in folds]


class PairsProtocol(Protocol):
    """Shared evaluation rule of pair protocols; subclasses only load their benchmark."""

    name = "pairs"
    supports_verifier_holdout = True

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> PairsBenchmark:
        raise NotImplementedError

    def units(self, bench: PairsBenchmark) -> list[EvalUnit]:
        return select_units(bench, getattr(self.cfg, "folds", None), "protocol.folds")

    def train_people(self, bench: PairsBenchmark, unit: EvalUnit) -> list[str]:
        return bench.people_of(unit.train)

    def test_people(self, bench: PairsBenchmark, unit: EvalUnit) -> list[str]:
        """The people the test fold's pairs name: what the identity audit must compare with the
        training people (a pairs line may name someone people.txt lists in another fold)."""
        pairs = bench.folds[unit.test].pairs
        return sorted({bench.faces.names[label] for label in np.unique(bench.faces.labels[pairs.ravel()])})

    def evaluate_unit(
        self,
        bench: PairsBenchmark,
        unit: EvalUnit,
        features: np.ndarray,
        verifier: Verifier,
        fit_people: Optional[list[str]] = None,
    ) -> PairOutcome:
        """``fit_people``: a subset of the training people to fit the verifier on (default: all of
        them); thresholds are still chosen on every training fold's pairs."""
        train_people = self.train_people(bench, unit)
        if fit_people is not None and not set(fit_people) <= set(train_people):
            raise ValueError(f"{unit.name}: the verifier's fit people must be training people of the split")
        fit_index = bench.image_index_of(train_people if fit_people is None else fit_people)
        verifier.fit(features[fit_index], bench.faces.labels[fit_index])

        def scores(fold_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
            pairs = np.concatenate([bench.folds[k].pairs for k in fold_ids])
            same = np.concatenate([bench.folds[k].same for k in fold_ids])
            return np.asarray(verifier.score(features[pairs[:, 0]], features[pairs[:, 1]]), dtype=np.float64), same

        train_scores, train_same = scores(unit.train)
        test_scores, test_same = scores([unit.test])
        return PairOutcome(unit.name, train_scores, train_same, test_scores, test_same)

    def summarize(self, outcomes: list[PairOutcome]) -> Any:
        return evaluate_pair_folds(
            [(o.name, o.train_scores, o.train_same, o.test_scores, o.test_same) for o in outcomes]
        )

    def headline(self, metrics: dict[str, Any], n_units: int) -> str:
        acc, se = metrics["mean_accuracy"], metrics.get("se_accuracy")
        spread = f" ± {100 * se:.2f} (SE)" if se is not None else ""
        return f"accuracy {100 * acc:.2f}%{spread} over {n_units} fold(s), AUC {metrics['auc']:.4f}, EER {100 * metrics['eer']:.2f}%"
