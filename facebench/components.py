"""Contracts every component kind honours, so the core can run any method without knowing it.

The core never imports a method: it builds components by name from the registry and talks
to them only through these shapes, all seven kinds here: Backbone, Loss, Verifier, Dataset,
Protocol, Tracker and Analysis (base classes to subclass), and the Benchmark, Unit and Summary shapes a
protocol hands back (``typing.Protocol``s: any object of that shape will do). ``facebench.testing`` checks a
component against them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Protocol as Structural, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

FEATURE = "feature"


@dataclass(frozen=True)
class BuildContext:
    """What a factory may need to know that its own config cannot say."""

    num_classes: int = 0
    feature_dim: int = 0
    input_shape: tuple[int, int, int] = (3, 55, 47)  # (channels, height, width)
    device: str = "cpu"
    seed: int = 0


class Backbone(nn.Module):
    """A network from an aligned face tensor (N, C, H, W) to features.

    ``forward`` returns a dict: ``outputs["feature"]`` is the (N, feature_dim) test-time
    feature; any other entries are named side outputs a loss may supervise (DeepID2+
    stage features). ``trainable = False`` marks a fixed feature map (raw pixels).
    ``exportable = False`` marks one computed outside torch's graph (LBP), which ONNX cannot hold.
    """

    input_shape: tuple[int, int, int] = (3, 55, 47)
    feature_dim: int = 0
    trainable: ClassVar[bool] = True
    exportable: ClassVar[bool] = True


@dataclass
class LossOutput:
    """Named loss terms (already weighted: the optimiser minimises their sum) and metrics."""

    terms: dict[str, torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        return torch.stack([t for t in self.terms.values()]).sum()


class Loss(nn.Module):
    """A supervisory signal on backbone outputs.

    ``batch`` declares the batches it needs: ``"plain"`` (any shuffle) or ``"pk"`` (P identities
    x K images each, for pair and triplet mining). A loss may own parameters (a softmax head)
    which join the optimiser, and may keep state between steps (DeepID2's margin).
    """

    batch: ClassVar[Literal["plain", "pk"]] = "plain"

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:  # pragma: no cover - contract
        raise NotImplementedError


class Verifier:
    """Turns two sets of features into similarity scores, higher = same person.

    ``fit`` sees only features the protocol allows (training folds); it may be a no-op.
    ``score`` compares aligned rows, ``score_matrix`` all rows of A with all rows of B.
    ``state`` / ``load_state`` round-trip fitted parameters as plain arrays (saved as npz,
    never pickle). A verifier that makes choices while fitting (the DeepID2 ensemble's patch
    selection) may also define ``fit_report() -> dict``: the run stores it in each unit's row
    of the result record as ``verifier_report``.
    """

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "Verifier":
        return self

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - contract
        raise NotImplementedError

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - contract
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> "Verifier":
        return self


@dataclass
class FaceData:
    """Identity-labelled faces, decoded once: the unit every dataset and protocol hands over.

    ``images`` is uint8 (N, H, W, C); ``labels[i]`` indexes ``names`` (one name per identity).
    ``keys`` names each image (a relative path) so errors and caches can point at it.
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    keys: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"FaceData.images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images) or len(self.keys) != len(self.images):
            raise ValueError("FaceData: images, labels and keys differ in length")

    def with_min_images(self, min_images: int) -> "FaceData":
        """The identities that have at least ``min_images`` images (all of them for 1)."""
        if min_images <= 1:
            return self
        counts = np.bincount(self.labels, minlength=len(self.names))
        return self.subset(np.flatnonzero(counts[self.labels] >= min_images))

    def subset(self, index: np.ndarray) -> "FaceData":
        """The images at ``index``, relabelled 0..k-1 over the identities that remain."""
        index = np.asarray(index)
        kept, labels = np.unique(self.labels[index], return_inverse=True)
        return FaceData(
            images=self.images[index],
            labels=labels.astype(np.int64),
            names=[self.names[k] for k in kept],
            keys=[self.keys[i] for i in index],
            info=dict(self.info),
        )


class Dataset:
    """A training source of identity-labelled faces (subclass it; the defaults are outside data).

    ``family``: the protocol family this source is the training side of (``"lfw"``: per test
    fold, train on the other folds' people: regime unrestricted_no_outside), None for outside
    data. ``synthetic``: made-up faces, scored only on the synthetic benchmark.
    ``protocol_defaults()``: settings its own family's protocol takes from it where the protocol
    leaves them unset (LFW's training folds tell the LFW protocol where LFW lives).
    ``check()`` runs before anything is decoded; ``load`` decodes once through the cache.
    """

    family: ClassVar[Optional[str]] = None
    synthetic: ClassVar[bool] = False

    def check(self) -> None:
        """Refuse what can be refused without decoding (missing folders, malformed lists)."""

    def protocol_defaults(self) -> dict[str, Any]:
        return {}

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> FaceData:  # pragma: no cover - contract
        raise NotImplementedError


class Unit(Structural):
    """One evaluated split (a test fold, a BLUFR trial): its name is its row in the record."""

    name: str


class Benchmark(Structural):
    """All faces a protocol evaluates, its splits and what the record says about it."""

    faces: FaceData
    units: Sequence[Unit]
    info: dict[str, Any]

    def image_index_of(self, people: list[str]) -> np.ndarray: ...


class Summary(Structural):
    """The protocol's figures over the evaluated units.

    ``to_dict()``: the summary metrics (JSON-safe; the record's ``metrics``), ``unit_rows()``:
    one JSON-safe dict per unit with its ``name``, ``fold_table()``: the same as a table
    (folds.csv), ``fpr`` / ``tpr``: the ROC to plot.
    """

    fpr: np.ndarray
    tpr: np.ndarray

    def to_dict(self) -> dict[str, Any]: ...

    def unit_rows(self) -> list[dict[str, Any]]: ...

    def fold_table(self) -> pd.DataFrame: ...


class Protocol:
    """An evaluation: which faces, which splits, and the rule that turns scores into figures.

    ``train_people`` / ``test_people``: who a unit's model may train on and who its evaluated
    pairs or trials actually use (the identity audit compares the two). ``evaluate_unit`` fits
    ``verifier`` on the unit's training people, or on ``fit_people`` (a subset of them, kept out
    of the network's training by ``evaluation.verifier_holdout``; only where
    ``supports_verifier_holdout``), and scores the unit. ``check()`` runs before anything is
    decoded. Pair protocols subclass ``facebench.protocols.pairs.PairsProtocol``.
    """

    name: str = "protocol"
    family: ClassVar[Optional[str]] = None
    synthetic: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "mean_accuracy"
    supports_verifier_holdout: ClassVar[bool] = False

    def check(self) -> None:
        """Refuse what can be refused without decoding (protocol files, fold numbers)."""

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> Benchmark:  # pragma: no cover - contract
        raise NotImplementedError

    def units(self, bench: Benchmark) -> list[Unit]:  # pragma: no cover - contract
        raise NotImplementedError

    def train_people(self, bench: Benchmark, unit: Unit) -> list[str]:  # pragma: no cover - contract
        raise NotImplementedError

    def test_people(self, bench: Benchmark, unit: Unit) -> list[str]:  # pragma: no cover - contract
        raise NotImplementedError

    def evaluate_unit(self, bench: Benchmark, unit: Unit, features: np.ndarray, verifier: Verifier,
                      fit_people: Optional[list[str]] = None) -> Any:  # pragma: no cover - contract
        raise NotImplementedError

    def summarize(self, outcomes: list[Any]) -> Summary:  # pragma: no cover - contract
        raise NotImplementedError

    def headline(self, metrics: dict[str, Any], n_units: int) -> str:  # pragma: no cover - contract
        raise NotImplementedError


class Tracker:
    """Receives configs, metrics, tables and curves. Every method is optional to override;
    a tracker must never make a run fail (its failures are reported, the record is kept)."""

    def start(self, config: dict[str, Any], run_dir: Path) -> None:
        """A run begins."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Training metrics at ``step``."""

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final metrics of the run."""

    def table(self, name: str, table: pd.DataFrame) -> None:
        """A per-fold or per-trial table."""

    def roc(self, fpr: np.ndarray, tpr: np.ndarray) -> None:
        """The pooled ROC curve."""

    def finish(self, status: str) -> None:
        """The run ended (complete or failed); flush and close."""


@dataclass
class Finding:
    """A claim of the literature tested on one run (or across runs): the claim, whether it holds
    at this scale (None: this run cannot say), and the numbers that decide it."""

    claim: str
    holds: Optional[bool]
    evidence: str


@dataclass
class AnalysisResult:
    """What an analysis measured: ``summary`` (JSON-safe numbers, into analysis.json),
    ``figures`` (file stem -> matplotlib Figure, saved as PNG beside it), ``findings``."""

    summary: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


class Analysis:
    """A measurement of a finished run's trained networks and test-time features
    (``python -m facebench.analyze RUN_DIR``), beside its record and never changing it.

    ``analyse(run)`` gets a ``facebench.analysis.AnalysedRun``: the run's config and record, its
    benchmark, each evaluated unit's trained backbone and features, and helpers to extract
    features of other images and to score features under the run's own protocol and folds.
    ``compare(summaries, baselines)`` (optional) tests findings across several analysed runs:
    ``summaries`` maps each run's label to this analysis's summary, ``baselines`` names the runs
    whose backbone learns nothing (pixels, LBP).
    """

    def analyse(self, run: Any) -> AnalysisResult:  # pragma: no cover - contract
        raise NotImplementedError

    def compare(self, summaries: dict[str, dict[str, Any]], baselines: set[str]) -> AnalysisResult:
        return AnalysisResult({})
