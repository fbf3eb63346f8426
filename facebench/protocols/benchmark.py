"""The shape every pair-based protocol hands to the evaluator: faces, folds of pairs, people.

LFW View 1, LFW View 2 and the synthetic benchmark are all this one structure, so one
evaluator (fit on training folds, exact threshold, accuracy on the test fold) serves them all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from facebench.components import FaceData


@dataclass
class PairFold:
    """One fold: aligned pairs of image indices into ``PairsBenchmark.faces`` and its people.

    ``people`` are the names of the fold's people (LFW people.txt); in the no-outside regime
    their images are what a model for another test fold may train on.
    """

    name: str
    pairs: np.ndarray  # (M, 2) int64 indices into faces.images
    same: np.ndarray  # (M,) bool, True for a matched pair
    people: list[str]

    def __post_init__(self) -> None:
        self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        self.same = np.asarray(self.same, dtype=bool)
        if len(self.pairs) != len(self.same):
            raise ValueError(f"fold {self.name}: {len(self.pairs)} pairs but {len(self.same)} labels")


@dataclass
class EvalUnit:
    """One train/test split: test on ``test`` fold, fit everything on the ``train`` folds."""

    name: str
    test: int
    train: list[int]


@dataclass
class PairsBenchmark:
    """All faces a protocol refers to, its folds, and which splits are evaluated."""

    name: str
    faces: FaceData
    folds: list[PairFold]
    units: list[EvalUnit]
    info: dict = field(default_factory=dict)

    def people_of(self, fold_ids: list[int]) -> list[str]:
        return sorted({p for k in fold_ids for p in self.folds[k].people})

    def image_index_of(self, people: list[str]) -> np.ndarray:
        """Indices of every image of the named people."""
        wanted = np.zeros(len(self.faces.names), dtype=bool)
        wanted[[self._position[p] for p in people]] = True
        return np.flatnonzero(wanted[self.faces.labels])

    @cached_property
    def _position(self) -> dict[str, int]:
        """Label of each person's name (built once: protocols ask for every fold's people)."""
        return {n: i for i, n in enumerate(self.faces.names)}
