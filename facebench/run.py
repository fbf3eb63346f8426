"""One experiment from a composed config to a result record.

Order matters for users: everything that can be checked cheaply (component names, config
values, data paths, identity overlap declared by the regime) is checked before any image is
decoded or any step trained.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from facebench.atomic_io import DiskFullError
from facebench.audit import audit_identities, audit_status
from facebench.collapse import detect_collapse, features_constant
from facebench.components import BuildContext, Dataset, FaceData, Protocol, Tracker
from facebench.config import (
    ConfigError, EvaluationConfig, FeaturesConfig, RunConfig, TrainerConfig, check_writable, reject_code_targets, to_plain,
)
from facebench.features import extract_features
from facebench.labels import run_label
from facebench.convergence import still_improving
from facebench.learning_curve import LearningCurve
from facebench.registry import RUN_KINDS, Registry, get_registry, plugin_distributions
from facebench.splits import hold_out_people
from facebench.results import (
    RECORD_FILE, RecordError, environment, finished_records, new_run_dir, write_artifacts, write_record, write_text,
)
from facebench.validation import validate_node
from facebench.train import TrainStats, train

log = logging.getLogger("facebench")

#: Keys that say where a run is written and how it is reported, not what it measures (excluded
#: from the config key, so such a change reuses a complete record).
REPORTING_KEYS = ("results_root", "cache_dir", "tracker", "validate_only", "reuse_complete", "objective",
                  "objective_when_diverged")
#: Keys that do not change what a training unit learns (excluded from the checkpoint key, so
#: re-evaluating finished units with another verifier and trainer.resume=true costs no training).
VOLATILE_KEYS = (*REPORTING_KEYS, "hydra", "method", "verifier", "features")
#: Skipped images listed by path in a record (all are counted); the rest are in the log.
SKIPS_LISTED = 20


class GuardedTracker(Tracker):
    """The configured tracker with its failures turned into warnings.

    The tracker contract says a tracker never fails a run; the core enforces it, so a
    third-party tracker that raises (a server down, a bug) costs a warning, never the local
    record, which is the result.
    """

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner

    def _call(self, method: str, *args: Any) -> None:
        try:
            getattr(self.inner, method)(*args)
        except Exception as exc:
            log.warning(
                "tracker %s: %s failed (%s: %s); the local record is unaffected",
                type(self.inner).__name__, method, type(exc).__name__, exc,
            )

    def start(self, config: dict[str, Any], run_dir: Path) -> None:
        self._call("start", config, run_dir)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._call("log", metrics, step)

    def summary(self, metrics: dict[str, Any]) -> None:
        self._call("summary", metrics)

    def table(self, name: str, table: Any) -> None:
        self._call("table", name, table)

    def roc(self, fpr: np.ndarray, tpr: np.ndarray) -> None:
        self._call("roc", fpr, tpr)

    def finish(self, status: str) -> None:
        self._call("finish", status)


def skipped_images(faces: FaceData) -> dict[str, Any]:
    """How many images ``on_bad_image=skip`` left out of ``faces``, and the first of them with
    their reasons: a number measured on fewer images than the data holds must say so."""
    skipped = list(faces.info.get("skipped_images") or [])
    return {"images_skipped": len(skipped), "skipped_examples": skipped[:SKIPS_LISTED]}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: CUDA is not available on this machine; use device=cpu or device=auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_key(cfg: DictConfig) -> str:
    plain = to_plain(cfg)
    for k in VOLATILE_KEYS:
        plain.pop(k, None)
    trainer = plain.get("trainer", {})
    trainer.pop("resume", None)
    # The hold-outs decide who the networks train on, so they are part of the key (the verifier's
    # keyed where it was set before it moved from trainer to evaluation, so earlier checkpoints
    # still resume); the curve's pair count is not.
    evaluation = plain.pop("evaluation", {})
    for share in ("verifier_holdout", "curve_holdout"):
        if evaluation.get(share):
            trainer[share] = evaluation[share]
    plain.get("protocol", {}).pop("folds", None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_values(cfg: DictConfig, registry: Registry) -> None:
    """Every value against the rule its schema declares (facebench.validation), core and plugin
    schemas alike, before any component is built."""
    validate_node(cfg, RunConfig, "")
    label = cfg.get("label")
    if label is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.,+=@-]*", str(label)):
        raise ConfigError(f"label={label!r}: not accepted; use letters, digits and _ . , + = @ - (it names folders)")
    validate_node(cfg.trainer, TrainerConfig, "trainer")
    validate_node(cfg.features, FeaturesConfig, "features")
    validate_node(cfg.evaluation, EvaluationConfig, "evaluation")
    for kind, group in RUN_KINDS.items():
        validate_node(cfg[group], registry.get(kind, cfg[group].name).schema, group)


def with_schema_defaults(cfg: DictConfig, registry: Registry) -> DictConfig:
    """A past run's config with every setting its schemas gained since filled in by its default.

    Why: a run is rebuilt from its ``config.yaml`` (analyses, export) long after it ran, and a
    setting added to a schema later (``backbone.feature_relu``) would be missing from it. A new
    setting's default keeps the behaviour the code had before it, so the default is what the run
    ran with. The run's keys (``config_key``, ``checkpoint_key``) stay those of the config as written."""
    filled = cfg.copy()
    schemas = {"trainer": TrainerConfig, "features": FeaturesConfig, "evaluation": EvaluationConfig}
    for kind, group in RUN_KINDS.items():
        if isinstance(filled.get(group), DictConfig) and filled[group].get("name") is not None:
            schemas[group] = registry.get(kind, str(filled[group].name)).schema
    for group, schema in schemas.items():
        if isinstance(filled.get(group), DictConfig):
            defaults = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(schema)))
            filled[group] = OmegaConf.merge(defaults, filled[group])
    return filled


def check_pairing(cfg: DictConfig, dataset: Dataset, protocol: Protocol) -> None:
    """Refuse real training data scored on the synthetic benchmark (the config's default
    protocol): its number says nothing about real faces, and a user who named only ``data=``
    would never notice. Refused rather than switched to LFW when $FACEBENCH_LFW is set, so that
    what a run measures never depends on an environment variable."""
    if protocol.synthetic and not dataset.synthetic:
        raise ConfigError(
            f"data={cfg.data.name} is real training data, but protocol={cfg.protocol.name} is the embedded synthetic "
            "benchmark, which says nothing about real faces. Name a real benchmark: protocol=lfw_view2 "
            "protocol.root=/path/to/lfw (or export FACEBENCH_LFW=/path/to/lfw and add protocol=lfw_view2)."
        )


def config_key(cfg: DictConfig) -> str:
    """What makes two runs the same experiment: the whole run config (seed and folds included)
    but where it is written and how it is reported."""
    plain = to_plain(cfg)
    for k in REPORTING_KEYS:
        plain.pop(k, None)
    plain.get("trainer", {}).pop("resume", None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def complete_record(results_root: Path, key: str) -> Optional[dict[str, Any]]:
    """The newest finished record under ``results_root`` whose ``config_key`` is ``key``: status
    complete, or partial (the folds ``protocol.folds`` chose, which the key includes), no error."""
    found = [(path.stat().st_mtime, record) for path, record in finished_records(results_root)
             if record.get("config_key") == key]
    return max(found, key=lambda item: item[0])[1] if found else None


@dataclass
class Plan:
    """What will run, decided before any data is decoded."""

    registry: Registry
    device: torch.device
    shape: tuple[int, int, int]
    dataset: Dataset
    protocol: Protocol
    tracker: Tracker
    regime: str
    per_unit_training: bool
    label: str


def plan_run(cfg: DictConfig) -> Plan:
    """Build every component once and check what can be checked without decoding anything."""
    reject_code_targets(cfg)
    registry = get_registry()
    check_values(cfg, registry)
    check_writable(cfg)
    device = resolve_device(cfg.device)
    ctx = BuildContext(device=str(device), seed=int(cfg.seed))
    backbone = registry.build("backbone", cfg.backbone, ctx)
    # The loss and verifier used are built once the data says how many identities there are;
    # building them now, with a stand-in class count, runs their factories' checks of their own
    # settings before anything is decoded or trained.
    if getattr(backbone, "trainable", True):
        stand_in = BuildContext(num_classes=2, feature_dim=backbone.feature_dim, input_shape=backbone.input_shape,
                                seed=int(cfg.seed))
        registry.build("loss", cfg.loss, stand_in)
    registry.build("verifier", cfg.verifier, BuildContext(seed=int(cfg.seed)))
    dataset: Dataset = registry.build("dataset", cfg.data, ctx)
    protocol_cfg = cfg.protocol.copy()
    for key, value in dataset.protocol_defaults().items():  # settings left unset take the dataset's
        if key in protocol_cfg and protocol_cfg[key] is None:
            protocol_cfg[key] = value
    protocol: Protocol = registry.build("protocol", protocol_cfg, ctx)
    check_pairing(cfg, dataset, protocol)
    per_unit = dataset.family is not None and dataset.family == protocol.family
    implied = "unrestricted_no_outside" if per_unit else "unrestricted_labeled_outside"
    regime = implied if cfg.regime == "auto" else cfg.regime
    if regime != implied:
        raise ConfigError(
            f"regime={cfg.regime}: data={cfg.data.name} with protocol={cfg.protocol.name} is {implied}. "
            "Set regime=auto or pick data/protocol that match the regime."
        )
    dataset.check()
    protocol.check()
    _check_verifier_holdout(cfg, per_unit, protocol)
    tracker = GuardedTracker(registry.build("tracker", cfg.tracker, ctx))
    return Plan(registry, device, backbone.input_shape, dataset, protocol, tracker, regime, per_unit, run_label(cfg))


def _check_verifier_holdout(cfg: DictConfig, per_unit: bool, protocol: Protocol) -> None:
    share = float(cfg.evaluation.verifier_holdout)
    if share and not (per_unit and protocol.supports_verifier_holdout):
        raise ConfigError(
            f"evaluation.verifier_holdout={share} needs a pair protocol with per-split training on its own data "
            f"(e.g. data=lfw protocol=lfw_view2); with data={cfg.data.name} protocol={cfg.protocol.name} "
            "set it to 0"
        )


def _verifier_people_by_unit(cfg: DictConfig, plan: Plan, bench: Any, units: list[Any]) -> dict[str, list[str]]:
    """Every split's verifier people, chosen from labels alone so that a share that does not fit
    some split is refused before the first split trains."""
    share = float(cfg.evaluation.verifier_holdout)
    if not (share and plan.per_unit_training):
        return {}
    min_images = int(cfg.trainer.min_images_per_identity)
    chosen = {}
    for unit in units:
        index = bench.image_index_of(plan.protocol.train_people(bench, unit))
        ids, counts = np.unique(bench.faces.labels[index], return_counts=True)
        trained = counts >= min_images  # the identities _training_identities keeps, in label order
        held = hold_out_people(counts[trained], share, np.random.default_rng(int(cfg.seed)),
                               "evaluation.verifier_holdout", f"the training people of {unit.name}")
        chosen[unit.name] = sorted(bench.faces.names[k] for k in ids[trained][held])
    return chosen


def without_people(faces: FaceData, people: list[str]) -> FaceData:
    """``faces`` less every image of ``people``."""
    dropped = set(people)
    keep = np.array([name not in dropped for name in faces.names], dtype=bool)
    return faces.subset(np.flatnonzero(keep[faces.labels]))


def _training_identities(faces: FaceData, cfg: DictConfig, where: str) -> FaceData:
    """``faces`` less the identities under ``trainer.min_images_per_identity``."""
    kept = faces.with_min_images(int(cfg.trainer.min_images_per_identity))
    if len(kept.names) < 2:
        raise ConfigError(
            f"trainer.min_images_per_identity={cfg.trainer.min_images_per_identity} leaves {len(kept.names)} "
            f"training identities in {where}: lower it"
        )
    return kept


def _train_unit(
    cfg: DictConfig, plan: Plan, faces: FaceData, unit_name: str, checkpoint_dir: Path,
    curve_faces: Optional[FaceData] = None,
) -> tuple[Any, Any, TrainStats]:
    ctx = BuildContext(
        num_classes=len(faces.names), device=str(plan.device), seed=int(cfg.seed), input_shape=plan.shape
    )
    torch.manual_seed(int(cfg.seed))
    backbone = plan.registry.build("backbone", cfg.backbone, ctx)
    if not getattr(backbone, "trainable", True):
        return backbone, None, TrainStats()
    ctx = BuildContext(
        num_classes=len(faces.names),
        feature_dim=backbone.feature_dim,
        device=str(plan.device),
        seed=int(cfg.seed),
        input_shape=plan.shape,
    )
    loss = plan.registry.build("loss", cfg.loss, ctx)
    trainer_cfg = OmegaConf.to_object(cfg.trainer)
    learning_curve = None
    if curve_faces is not None:
        learning_curve = LearningCurve(backbone, curve_faces, int(cfg.trainer.steps), int(cfg.evaluation.curve_pairs),
                                       int(cfg.seed), plan.device, int(cfg.features.batch_size))

    def on_log(step: int, metrics: dict[str, float]) -> None:
        plan.tracker.log({f"{unit_name}/{k}": v for k, v in metrics.items()}, step)

    stats = train(
        backbone,
        loss,
        faces,
        trainer_cfg,
        plan.device,
        int(cfg.seed),
        checkpoint=checkpoint_dir / f"{unit_name}.pt",
        label=f"{plan.label}/{unit_name}",
        on_log=on_log,
        on_step=learning_curve.measure if learning_curve is not None else None,
        extras={"learning_curve": learning_curve} if learning_curve is not None else None,
    )
    if learning_curve is not None:
        stats.curve = learning_curve.points
    return backbone, loss, stats


def execute(cfg: DictConfig, run_dir: Optional[Path] = None) -> dict[str, Any]:
    """Run the experiment ``cfg`` describes and write its record; returns the record."""
    began = time.perf_counter()
    plan = plan_run(cfg)
    if cfg.validate_only:
        log.info("configuration valid: every component built and every path checked; nothing trained (validate_only)")
        return {"status": "validated", "regime": plan.regime}
    key = config_key(cfg)
    if cfg.reuse_complete:
        done = complete_record(Path(cfg.results_root), key)
        if done is not None:
            log.info("%s: a complete record of this configuration exists (%s); not run again (reuse_complete)",
                     plan.label, done["run_dir"])
            return {**done, "reused": True}
    run_dir = Path(run_dir) if run_dir else new_run_dir(cfg.results_root, plan.label)
    run_dir.mkdir(parents=True, exist_ok=True)
    plain_cfg = to_plain(cfg)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain_cfg)))
    seed_everything(int(cfg.seed))
    record: dict[str, Any] = {
        "status": "failed",
        "method": plan.label,
        "preset": cfg.method,
        "components": {k: plain_cfg[k] for k in ("backbone", "loss", "verifier", "data", "trainer", "features")},
        "protocol": {"name": cfg.protocol.name, **{k: v for k, v in plain_cfg["protocol"].items() if k != "name"}},
        "regime": plan.regime,
        "seed": int(cfg.seed),
        "device": str(plan.device),
        "metrics": {},
        "units": [],
        "environment": environment(),
        "config_key": key,
        "plugins": plugin_distributions(plan.registry, cfg),
        "run_dir": str(run_dir),
    }
    plan.tracker.start(plain_cfg, run_dir)
    try:
        _evaluate(cfg, plan, run_dir, record)
        record["status"] = "complete" if not record.get("partial") else "partial"
    except BaseException as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["timings"] = {"total_seconds": round(time.perf_counter() - began, 3)}
        try:
            write_record(run_dir, record)
        except (OSError, DiskFullError) as write_exc:  # the run's own error is the one to report
            log.error("could not write the failed record to %s (%s)", run_dir / RECORD_FILE, write_exc)
        plan.tracker.finish("failed")
        raise
    record["timings"]["total_seconds"] = round(time.perf_counter() - began, 3)
    try:
        path = write_record(run_dir, record)
    except (OSError, DiskFullError) as exc:
        plan.tracker.finish("failed")
        raise RecordError(
            f"{run_dir / RECORD_FILE}: the record could not be written ({exc}); this run left no result and "
            "does not count. Free space or fix permissions and run again."
        ) from exc
    plan.tracker.summary(record["metrics"])
    plan.tracker.finish("complete")
    log.info("record written: %s", path)
    return record


@dataclass
class UnitTraining:
    """What one unit's model is trained on, who its verifier is fitted on (None: all), and the
    held-out training people its learning curve is measured on (None: no curve)."""

    faces: FaceData
    fit_people: Optional[list[str]] = None
    curve_faces: Optional[FaceData] = None


@dataclass
class Trained:
    """A trained model and the features it gives every benchmark image (shared by units when
    one model serves them all)."""

    backbone: Any
    stats: TrainStats
    features: Optional[np.ndarray] = None


def _evaluate(cfg: DictConfig, plan: Plan, run_dir: Path, record: dict[str, Any]) -> None:
    """Load the benchmark, then per unit: choose its training people, train (or reuse the one
    model), extract features, fit the verifier and score; then summarise into the record."""
    timings: dict[str, float] = {"train_seconds": 0.0, "features_seconds": 0.0, "eval_seconds": 0.0,
                                 "earlier_sittings_seconds": 0.0}
    record["timings"] = timings
    bench, units = _load_benchmark(cfg, plan, record, timings)
    checkpoint_dir = Path(cfg.results_root) / "checkpoints" / checkpoint_key(cfg)
    audits: list[dict[str, Any]] = []
    training = unit_training(cfg, plan, bench, units, record, audits)
    outcomes, unit_rows = [], []
    trained: Optional[Trained] = None
    for unit in units:
        planned = training[unit.name]
        t = time.perf_counter()
        # A network that learns nothing is the same for every unit: its features are extracted once.
        if trained is None or (plan.per_unit_training and getattr(trained.backbone, "trainable", True)):
            name = unit.name if plan.per_unit_training else "model"
            backbone, _, stats = _train_unit(cfg, plan, planned.faces, name, checkpoint_dir,
                                             planned.curve_faces)
            trained = Trained(backbone, stats)
            # Training time spent before an interruption: the record's cost covers every sitting. A
            # net resumed at its last step (re-scored) trained in another record, which counts it.
            if stats.steps:
                timings["earlier_sittings_seconds"] += stats.earlier_seconds
        timings["train_seconds"] += time.perf_counter() - t
        t = time.perf_counter()
        if trained.features is None:
            trained.features = extract_features(
                trained.backbone, bench.faces.images, cfg.features.flip, cfg.features.batch_size, plan.device
            )
        timings["features_seconds"] += time.perf_counter() - t
        t = time.perf_counter()
        verifier = plan.registry.build("verifier", cfg.verifier, BuildContext(seed=int(cfg.seed)))
        outcomes.append(plan.protocol.evaluate_unit(bench, unit, trained.features, verifier,
                                                    fit_people=planned.fit_people))
        timings["eval_seconds"] += time.perf_counter() - t
        unit_rows.append(_unit_row(unit.name, planned, trained, verifier))
        log.info("%s: %s evaluated", plan.label, unit.name)
    record["identity_audit"] = audits
    record["identity_audit_status"] = audit_status(audits)
    _summarize(cfg, plan, run_dir, record, outcomes, unit_rows, trained)
    for k in list(timings):
        timings[k] = round(timings[k], 3)


def _load_benchmark(
    cfg: DictConfig, plan: Plan, record: dict[str, Any], timings: dict[str, float]
) -> tuple[Any, list[Any]]:
    """The protocol's benchmark and the units to evaluate, described in the record."""
    t0 = time.perf_counter()
    bench = plan.protocol.load(plan.shape, cfg.cache_dir, cfg.on_bad_image)
    units = plan.protocol.units(bench)
    timings["load_seconds"] = round(time.perf_counter() - t0, 3)
    record["partial"] = len(units) < len(bench.units)
    record["protocol"]["units_evaluated"] = [u.name for u in units]
    record["protocol"]["units_total"] = len(bench.units)
    record["benchmark"] = {**bench.info, **skipped_images(bench.faces)}
    return bench, units


def unit_training(
    cfg: DictConfig, plan: Plan, bench: Any, units: list[Any], record: dict[str, Any], audits: list[dict[str, Any]]
) -> dict[str, UnitTraining]:
    """Each unit's training faces, audited against the people its pairs use: the split's own
    people (no-outside regime, less the verifier's hold-out) or the one outside training set."""
    if not plan.per_unit_training:
        outside = _training_identities(plan.dataset.load(plan.shape, cfg.cache_dir, cfg.on_bad_image), cfg, "data")
        record["training_data"] = {
            "name": cfg.data.name,
            "images": len(outside.images),
            "identities": len(outside.names),
            **skipped_images(outside),
        }
        evaluated = sorted({p for u in units for p in plan.protocol.test_people(bench, u)})
        anonymous = bench.info.get("anonymous_people")  # a benchmark that names no one (a .bin)
        audits.append(
            audit_identities(
                outside.names, evaluated, cfg.allow_identity_overlap, "data", plan.regime,
                unnamed=outside.names if anonymous else outside.info.get("unnamed_identities"),
                unnamed_reason=anonymous or outside.info.get("why_unnamed", ""),
            )
        )
        outside, curve = _curve_split(cfg, outside, "the training data")
        return {unit.name: UnitTraining(outside, curve_faces=curve) for unit in units}
    held_out = _verifier_people_by_unit(cfg, plan, bench, units)
    training = {}
    for unit in units:
        faces = bench.faces.subset(bench.image_index_of(plan.protocol.train_people(bench, unit)))
        audits.append(
            audit_identities(faces.names, plan.protocol.test_people(bench, unit), False, f"unit {unit.name}", plan.regime)
        )
        faces = _training_identities(faces, cfg, unit.name)
        fit_people = held_out.get(unit.name)
        faces, curve = _curve_split(cfg, without_people(faces, fit_people) if fit_people else faces,
                                    f"the training people of {unit.name}")
        training[unit.name] = UnitTraining(faces, fit_people, curve)
    return training


def _curve_split(cfg: DictConfig, faces: FaceData, where: str) -> tuple[FaceData, Optional[FaceData]]:
    """(faces to train on, faces of the people held out for the learning curve or None)."""
    share = float(cfg.evaluation.curve_holdout)
    if not share:
        return faces, None
    held = hold_out_people(np.bincount(faces.labels, minlength=len(faces.names)), share,
                           np.random.default_rng([int(cfg.seed), 7]), "evaluation.curve_holdout", where)
    people = [faces.names[k] for k in held]
    curve = faces.subset(np.flatnonzero(np.isin(faces.labels, held)))
    return without_people(faces, people), curve


def _unit_row(name: str, unit_training: UnitTraining, trained: Trained, verifier: Any) -> dict[str, Any]:
    """A unit's row of the record, before the protocol's per-unit figures join it."""
    stats, fit_people = trained.stats, unit_training.fit_people
    fit_report = getattr(verifier, "fit_report", None)
    return {
        "name": name,
        "train_identities": len(unit_training.faces.names),
        "train_images": len(unit_training.faces.images),
        **({"verifier_people": len(fit_people)} if fit_people is not None else {}),
        "train_steps": stats.steps,
        "train_seconds": round(stats.seconds, 3),
        "images_per_second": round(stats.images_per_second, 1) if stats.images else None,
        "resumed_from_step": stats.resumed_from,
        **({"earlier_sittings_train_seconds": round(stats.earlier_seconds, 3)} if stats.resumed_from and stats.steps else {}),
        "final_train_metrics": stats.last_metrics,
        **({"learning_curve": stats.curve, "still_improving": still_improving(stats.curve)} if stats.curve else {}),
        **({"features_constant": features_constant(trained.features)} if stats.steps else {}),
        **({"verifier_report": fit_report()} if fit_report is not None else {}),
    }


def _summarize(
    cfg: DictConfig, plan: Plan, run_dir: Path, record: dict[str, Any], outcomes: list[Any],
    unit_rows: list[dict[str, Any]], trained: Optional[Trained],
) -> None:
    """The protocol's summary, the per-unit figures, collapse signs and feature statistics into
    the record; the tables and the ROC beside it and to the tracker."""
    summary = plan.protocol.summarize(outcomes)
    metrics = summary.to_dict()
    per_unit = {row["name"]: row for row in summary.unit_rows()}
    for row in unit_rows:
        row.update(per_unit.get(row["name"], {}))
    record["units"] = unit_rows
    record["metrics"] = metrics
    record["primary_metric"] = plan.protocol.primary_metric
    record["collapse"] = detect_collapse(unit_rows)
    if record["collapse"]["collapsed"]:
        first = record["collapse"]["collapsed_units"][0]
        log.warning("%s: training collapsed in %s (%s); the record is marked collapsed", plan.label,
                    ", ".join(record["collapse"]["collapsed_units"]), "; ".join(record["collapse"]["signs"][first]))
    features = trained.features if trained is not None else None
    record["feature_dim"] = int(features.shape[1]) if features is not None else None
    report = getattr(trained.backbone, "feature_report", None) if trained is not None else None
    if report is not None and features is not None:
        record["feature_report"] = report(features)
    write_artifacts(run_dir, summary, metrics, f"{plan.label} on {cfg.protocol.name} ({plan.regime})")
    plan.tracker.table("folds", summary.fold_table())
    plan.tracker.roc(np.asarray(summary.fpr), np.asarray(summary.tpr))
    record["headline"] = plan.protocol.headline(metrics, len(unit_rows)) + (
        " [COLLAPSED: see the record's collapse signs]" if record["collapse"]["collapsed"] else ""
    )
