"""A finished run brought back to life for analysis: its config, record, benchmark, and each
evaluated unit's trained network and test-time features.

Everything comes from what the run left: ``config.yaml`` (checked as a run checks its config:
no code targets, every value against its schema; settings added to a schema since the run take
their defaults), ``metrics.json`` (complete or partial, no
error) and the checkpoints under ``<results_root>/checkpoints/<key>/``, which must hold the
run's final step. Features are extracted exactly as the run extracted them (its flip mode, its
input size), so an analysis measures the features the record scored.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from facebench.components import BuildContext, FaceData, Verifier
from facebench.config import ConfigError, TrainerConfig
from facebench.errors import FacebenchError
from facebench.features import extract_features
from facebench.results import RECORD_FILE, finished, read_record
from facebench.registry import get_registry
from facebench.run import Plan, UnitTraining, checkpoint_key, plan_run, unit_training, with_schema_defaults
from facebench.train import read_checkpoint

log = logging.getLogger("facebench.analysis")


class AnalysisError(FacebenchError):
    """A run that cannot be analysed; the message says which file and what to do."""


@dataclass
class UnitModel:
    """One evaluated unit: its trained backbone, what it trained on, and its features of every
    benchmark image (the run's own test-time features)."""

    unit: Any
    backbone: Any
    training: UnitTraining
    checkpoint: Optional[Path]
    features: np.ndarray

    @property
    def name(self) -> str:
        return str(self.unit.name)


class FitOnce(Verifier):
    """A verifier fitted once per unit, verifier config and fitting data: analyses that change only
    the test images (occlusion levels) score many times against one fit (a Joint Bayesian with PCA
    on raw pixels takes tens of seconds to fit)."""

    def __init__(self, build: Callable[[], Verifier], cache: dict[tuple[str, str, str], Verifier],
                 key: tuple[str, str]) -> None:
        self.build, self.cache, self.key = build, cache, key
        self.inner: Optional[Verifier] = None

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "FitOnce":
        data = np.ascontiguousarray(features)
        digest = hashlib.blake2b(data.view(np.uint8).ravel(), digest_size=16)
        digest.update(np.ascontiguousarray(labels).view(np.uint8).ravel())
        key = (*self.key, digest.hexdigest())
        if key not in self.cache:
            self.cache[key] = self.build().fit(features, labels)
        self.inner = self.cache[key]
        return self

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        assert self.inner is not None, "fit first"
        return self.inner.score(a, b)

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        assert self.inner is not None, "fit first"
        return self.inner.score_matrix(a, b)


def load_config(run_dir: Path) -> DictConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise AnalysisError(f"{path}: no config.yaml; RUN_DIR must be a run's folder (the one holding {RECORD_FILE})")
    return OmegaConf.load(path)


def load_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RECORD_FILE
    if not path.is_file():
        raise AnalysisError(f"{path}: no record; the run has not finished (or RUN_DIR is not a run's folder)")
    record = read_record(path)
    if not finished(record):
        raise AnalysisError(f"{path}: the run {record['status']} ({record.get('error', 'no error recorded')}); "
                            "only finished runs can be analysed")
    return record


class AnalysedRun:
    """The run at ``run_dir``, loaded unit by unit (``max_units`` of the units it evaluated)."""

    def __init__(self, run_dir: Path, checkpoint_dir: Optional[Path] = None, max_units: Optional[int] = None) -> None:
        self.run_dir = Path(run_dir)
        self.record = load_record(self.run_dir)
        written = load_config(self.run_dir)
        self.cfg = with_schema_defaults(written, get_registry())
        self.plan: Plan = plan_run(self.cfg)
        self.bench = self.plan.protocol.load(self.plan.shape, self.cfg.cache_dir, self.cfg.on_bad_image)
        if not hasattr(self.bench, "image_index_of"):
            raise AnalysisError(f"protocol={self.cfg.protocol.name}: analyses need a benchmark of named people's images")
        evaluated = list(self.record["protocol"].get("units_evaluated") or [u.name for u in self.plan.protocol.units(self.bench)])
        by_name = {u.name: u for u in self.bench.units}
        self.units_evaluated = [by_name[name] for name in evaluated]
        self.unit_list = self.units_evaluated[: max_units or None]
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else (
            Path(self.cfg.results_root) / "checkpoints" / checkpoint_key(written))
        self._fitted: dict[tuple[str, str, str], Verifier] = {}  # FitOnce's cache
        first = self.build_backbone()
        self.trainable = bool(getattr(first, "trainable", True))
        self._unused_build: Optional[Any] = first  # the first unit's network, built once

    @property
    def label(self) -> str:
        return str(self.record.get("method") or self.plan.label)

    @property
    def neurons(self) -> int:
        """Units of the backbone's feature (a row of ``features`` holds two under flip=concat)."""
        return int(self.units[0].backbone.feature_dim)

    def _context(self, num_classes: int = 0) -> BuildContext:
        return BuildContext(num_classes=num_classes, device=str(self.plan.device), seed=int(self.cfg.seed),
                            input_shape=self.plan.shape)

    @cached_property
    def training(self) -> dict[str, UnitTraining]:
        return unit_training(self.cfg, self.plan, self.bench, self.units_evaluated, {}, [])

    def checkpoint_of(self, unit: Any) -> Path:
        name = unit.name if self.plan.per_unit_training else "model"
        return self.checkpoint_dir / f"{name}.pt"

    def build_backbone(self) -> Any:
        torch.manual_seed(int(self.cfg.seed))
        return self.plan.registry.build("backbone", self.cfg.backbone, self._context())

    def trained_backbone(self, unit: Any) -> tuple[Any, Optional[Path]]:
        """The unit's network as it finished training (an untrainable one as built)."""
        backbone, self._unused_build = self._unused_build or self.build_backbone(), None
        if not self.trainable:
            return backbone, None
        path = self.checkpoint_of(unit)
        if not path.is_file():
            raise AnalysisError(
                f"{path}: no checkpoint for {unit.name} of {self.run_dir}; analyses need the trained networks. Re-run "
                "the run's command (it trains again) or pass checkpoint_dir=... where its checkpoints are")
        state = read_checkpoint(path)
        steps = int(self.cfg.trainer.steps)
        if int(state.get("step", -1)) != steps:
            raise AnalysisError(f"{path}: checkpoint at step {state.get('step')} of {steps}; the run's training did not "
                                "finish there (re-run its command with trainer.resume=true)")
        backbone.load_state_dict(state["backbone"])
        return backbone, path

    def extract(self, backbone: Any, images: np.ndarray) -> np.ndarray:
        """Features of uint8 (N, H, W, C) images as the run extracted its test-time features."""
        return extract_features(backbone, images, self.cfg.features.flip, int(self.cfg.features.batch_size),
                                self.plan.device)

    @cached_property
    def units(self) -> list[UnitModel]:
        models: list[UnitModel] = []
        for unit in self.unit_list:
            if models and not self.trainable:  # one fixed feature map serves every unit
                models.append(replace(models[0], unit=unit, training=self.training[unit.name]))
                continue
            backbone, path = self.trained_backbone(unit)
            log.info("%s: extracting %d images' features for %s", self.label, len(self.bench.faces.images), unit.name)
            features = self.extract(backbone, self.bench.faces.images)
            models.append(UnitModel(unit, backbone, self.training[unit.name], path, features))
        return models

    def per_image(self, features: np.ndarray) -> np.ndarray:
        """One row per image of the backbone's own units: under flip=concat a row holds the face's
        feature then its mirror's, and the face's half is the one a neuron-level analysis reads."""
        if self.cfg.features.flip == "concat":
            return features[:, : features.shape[1] // 2]
        return features

    def test_index(self, unit: Any) -> np.ndarray:
        """The images the unit's test pairs use (a benchmark without pair folds: every image of
        its test people)."""
        folds = getattr(self.bench, "folds", None)
        if folds is not None and hasattr(unit, "test"):
            return np.unique(folds[unit.test].pairs)
        return self.bench.image_index_of(self.plan.protocol.test_people(self.bench, unit))

    def verifier_config(self, name: Optional[str] = None, **settings: Any) -> DictConfig:
        """The run's verifier config, or ``name``'s defaults, with ``settings`` set."""
        if name is None or name == self.cfg.verifier.name:
            node = self.cfg.verifier.copy()
        else:
            node = OmegaConf.structured(self.plan.registry.get("verifier", name).schema)
            node.name = name
        for key, value in settings.items():
            node[key] = value
        return node

    def evaluate(self, features: dict[str, np.ndarray], verifier: Optional[DictConfig] = None) -> dict[str, Any]:
        """Score per-unit features (unit name -> features of every benchmark image; the units given)
        under the run's protocol, folds and verifier fitting rule; returns the protocol's summary metrics plus
        ``fold_accuracies`` (unit name -> accuracy)."""
        node = verifier if verifier is not None else self.cfg.verifier
        outcomes = []
        for model in (m for m in self.units if m.name in features):
            built = FitOnce(lambda: self.plan.registry.build("verifier", node, BuildContext(seed=int(self.cfg.seed))),
                            self._fitted, (model.name, OmegaConf.to_yaml(node)))
            outcomes.append(self.plan.protocol.evaluate_unit(self.bench, model.unit, features[model.name], built,
                                                             fit_people=model.training.fit_people))
        summary = self.plan.protocol.summarize(outcomes)
        metrics = summary.to_dict()
        out = {k: metrics[k] for k in ("mean_accuracy", "se_accuracy", "auc", "eer") if k in metrics}
        out["fold_accuracies"] = {row["name"]: row.get("accuracy") for row in summary.unit_rows()}
        return out

    def training_faces(self, unit: Any) -> FaceData:
        return self.training[unit.name].faces

    def retrain_config(self, steps: Optional[int] = None) -> Any:
        trainer = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainerConfig), self.cfg.trainer))
        return replace(trainer, steps=int(steps)) if steps else trainer


def check_run_dir(value: Any) -> Path:
    path = Path(str(value))
    if not path.is_dir():
        raise ConfigError(f"{path}: not a folder; give a run's folder (the one holding {RECORD_FILE})")
    return path
