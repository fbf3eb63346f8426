"""Core config schemas (trainer, features, evaluation, run) and composition outside the CLI.

Component schemas come from plugins through the registry; the ones here belong to the core
because every method shares them. Composition for tests and tools goes through the same
Hydra config tree the CLI uses, so what a test composes is what a user runs.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from facebench.errors import ConfigError
from facebench.validation import one_of, ranged

CONFIG_MODULE = "facebench_conf"


def register_resolvers() -> None:
    """``${facebench.uid:}`` gives run directories a random suffix, so no two runs share one;
    ``${facebench.label:method,overrides}`` names them by preset and chosen components."""
    if not OmegaConf.has_resolver("facebench.uid"):
        OmegaConf.register_new_resolver("facebench.uid", lambda: uuid.uuid4().hex[:6], use_cache=True)
    if not OmegaConf.has_resolver("facebench.label"):
        from facebench.labels import method_label

        OmegaConf.register_new_resolver("facebench.label", method_label)


@dataclass
class TrainerConfig:
    """How a backbone and its loss are fitted.

    steps: optimiser steps per training unit (the budget; kept equal across compared methods).
      300 by default: the offline synthetic default trains in about a minute on 2 cores.
    batch_size: images per step for plain batches; P x K batches use pk_identities x pk_images.
    optimizer: sgd | adam | adamw. schedule: constant | cosine | step (step: x0.1 at 50% and 75%).
    lr: 0.05 with SGD + momentum 0.9 (the papers trained with SGD; with He-initialised DeepID nets,
      200 steps on the synthetic default gave 84.5% at lr 0.05 vs 62.7% at lr 0.01, and 85.4% with
      Adam at 1e-3 — measured with +method=deepid, 2026-11-22).
    warmup_steps: linear warm-up from 0 before the schedule.
    min_images_per_identity: train only on identities with at least this many training images
      (1: all). LFW's training folds are mostly people with a single image: each is a softmax
      class seen once and gives no same-person pair. 2 keeps about 1,500 of the 5,200 people
      of nine folds (the "about 1,500 identities, about 5 images each" of a typical LFW
      training fold). The verifier is still fitted on every training image.
    flip_augment: random horizontal flips of training images.
    shift_augment: random translation of each training image by up to this many pixels in each
      direction (edges replicated). 0 (off) by default: the DeepID papers train on fixed crops
      and flips; on by choice it is a documented deviation (a variant's preset says so).
    checkpoint_every: steps between checkpoints (0: once per epoch over the training images).
    resume: continue from the last checkpoint of the same configuration, if any.
    max_seconds: stop training early after this many seconds (None: no limit); recorded.
    """

    steps: int = ranged(300, ge=1)
    batch_size: int = ranged(128, ge=2)
    optimizer: str = one_of("sgd", "sgd", "adam", "adamw")
    lr: float = ranged(0.05, gt=0)
    momentum: float = ranged(0.9, ge=0, lt=1)
    weight_decay: float = ranged(5e-4, ge=0)
    schedule: str = one_of("cosine", "constant", "cosine", "step")
    warmup_steps: int = ranged(0, ge=0)
    pk_identities: int = ranged(32, ge=2)
    pk_images: int = ranged(4, ge=2)
    min_images_per_identity: int = ranged(1, ge=1)
    flip_augment: bool = True
    shift_augment: int = ranged(0, ge=0)
    grad_clip: Optional[float] = ranged(None, gt=0)
    checkpoint_every: int = ranged(0, ge=0)
    resume: bool = False
    log_every: int = ranged(50, ge=0)
    amp: bool = False
    max_seconds: Optional[float] = ranged(None, gt=0)


@dataclass
class EvaluationConfig:
    """How a protocol's splits are used beyond the protocol's own definition.

    verifier_holdout: share of each split's training people with 2+ images kept out of the
      network's training, seeded by ``seed``; the verifier (and its PCA) is then fitted on them
      alone. 0 (off) by default: network and verifier both see every training person. The DeepID2
      paper trains its ConvNets on CelebFaces+A and Joint Bayesian on the disjoint CelebFaces+B,
      so that the verifier learns how features vary for people the network never saw; on LFW the
      price is fewer people for each. Pair protocols with per-split training only
      (unrestricted_no_outside): with outside training data the verifier already sees unseen
      people.
      (``trainer.verifier_holdout`` before; the old key is refused with this one's name.)
    curve_holdout: share of each training set's people with 2+ images kept out of the network's
      training to measure a learning curve on: validation pair accuracy (cosine on the features,
      best threshold on those pairs) and AUC at 25, 50, 75 and 100% of the training budget, in
      each unit's record row. Never the test fold: a study judges convergence on it (an entry
      still gaining over a point in its last quarter has not converged). 0 (off) by default.
    curve_pairs: same and as many different pairs drawn among the curve's people (seeded).
    """

    verifier_holdout: float = ranged(0.0, ge=0, lt=1)
    curve_holdout: float = ranged(0.0, ge=0, lt=1)
    curve_pairs: int = ranged(500, ge=10)


@dataclass
class FeaturesConfig:
    """Test-time feature extraction.

    flip: none | sum | concat — how the features of an image and its mirror combine
      (DeepID papers concatenate; insightface sums).
    batch_size: images per forward pass.
    """

    flip: str = one_of("concat", "none", "sum", "concat")
    batch_size: int = ranged(512, ge=1)


@dataclass
class RunConfig:
    """The run-level keys of conf/config.yaml, with what each accepts (documented there)."""

    seed: int = ranged(0, ge=0)
    regime: str = one_of("auto", "auto", "unrestricted_no_outside", "unrestricted_labeled_outside")
    on_bad_image: str = one_of("fail", "fail", "skip")
    objective: Optional[str] = None
    objective_when_diverged: Optional[float] = None
    label: Optional[str] = None


def register_core_configs() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="trainer", name="default", node=TrainerConfig, provider="facebench")
    cs.store(group="features", name="default", node=FeaturesConfig, provider="facebench")
    cs.store(group="evaluation", name="default", node=EvaluationConfig, provider="facebench")


#: Keys by which Hydra's ``instantiate`` would call what a config names.
INSTANTIATION_KEYS = ("_target_", "_partial_", "_args_")
#: Nodes Hydra builds itself; they may name only launchers and sweepers its plugin discovery
#: finds (installed code, selected through the hydra/launcher and hydra/sweeper groups).
HYDRA_PLUGIN_NODES = ("hydra.launcher", "hydra.sweeper")
#: The callbacks a config may name: facebench's own sweep summary and Hydra's own callbacks.
ALLOWED_CALLBACKS = frozenset({
    "facebench.sweeps.SweepSummary",
    "hydra.experimental.callbacks.LogJobReturnCallback",
    "hydra.experimental.callbacks.PickleJobInfoCallback",
})
#: Parts of a sweeper that Hydra's optimising sweepers build from the config, and the one
#: module each may name a class of: hydra-optuna-sweeper's sampler (TPE, random, CMA-ES, ...).
SWEEPER_PARTS = {"hydra.sweeper.sampler": "optuna.samplers"}
#: Python logging configs (dictConfig) call a handler's ``class`` and any ``()`` factory.
LOGGING_NODES = ("hydra.job_logging", "hydra.hydra_logging")


@functools.cache
def hydra_plugin_targets() -> frozenset[str]:
    """The class paths of every launcher and sweeper Hydra's plugin discovery finds."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper

    plugins = Plugins.instance()
    return frozenset(f"{c.__module__}.{c.__name__}" for kind in (Launcher, Sweeper) for c in plugins.discover(kind))


def _sweeper_part(parent: str, value: str) -> bool:
    """Whether ``value`` is a class the module SWEEPER_PARTS gives for ``parent`` exports."""
    module_name, _, name = value.rpartition(".")
    if SWEEPER_PARTS.get(parent) != module_name:
        return False
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    return name in getattr(module, "__all__", ()) and isinstance(getattr(module, name, None), type)


def _allowed_target(parent: str, key: str, value: Any) -> bool:
    if key != "_target_" or not isinstance(value, str):
        return False
    if parent in HYDRA_PLUGIN_NODES:
        return value in hydra_plugin_targets()
    if parent in SWEEPER_PARTS:
        return _sweeper_part(parent, value)
    return parent.startswith("hydra.callbacks.") and parent.count(".") == 2 and value in ALLOWED_CALLBACKS


def _refusal(where: str, value: Any) -> ConfigError:
    return ConfigError(
        f"config key '{where}' (= {value!r}) is not allowed: facebench never instantiates arbitrary code from a "
        "config. Name a registered component instead (python -m facebench.plugins lists them); Hydra launchers "
        "and sweepers are chosen through their groups (hydra/launcher=joblib), a sweeper's sampler through "
        "hydra/sweeper/sampler=tpe, and hydra.callbacks may name only "
        f"{', '.join(sorted(ALLOWED_CALLBACKS))}."
    )


def reject_code_targets(cfg: Any) -> None:
    """Refuse anything in a config that would make Hydra or logging call code it names: the
    instantiation keys anywhere (Hydra's own node included, except the launchers, sweepers and
    callbacks listed above), and logging factories other than the ``logging`` module's classes."""
    node = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
    stack: list[tuple[str, Any]] = [("", node)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            in_logging = path.startswith(LOGGING_NODES)
            for key, sub in value.items():
                where = f"{path}.{key}" if path else str(key)
                if key in INSTANTIATION_KEYS and not _allowed_target(path, key, sub):
                    raise _refusal(where, sub)
                if in_logging and (key == "()" or (key == "class" and not str(sub).startswith("logging."))):
                    raise _refusal(where, sub)
                stack.append((where, sub))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", sub) for i, sub in enumerate(value))


#: Keys that moved, with where they live now (a run that names the old key is told).
MOVED_KEYS = {
    "trainer.verifier_holdout": "evaluation.verifier_holdout (it splits the evaluation's training people, not the "
                                "trainer's settings)",
}


def split_override(override: str) -> tuple[str, str]:
    """``key`` and ``value`` of a command-line override (``+key=value``, ``~key``, ``key=value``)."""
    key, _, value = str(override).lstrip("+~").partition("=")
    return key, value


def check_moved_keys(overrides: list[str]) -> None:
    """Refuse an override of a key that moved, naming its new place."""
    for override in overrides:
        key = split_override(override)[0]
        if key in MOVED_KEYS:
            raise ConfigError(f"{key} has moved to {MOVED_KEYS[key]}: write {override.replace(key, MOVED_KEYS[key].split()[0], 1)}")


#: Folders a run writes to, and how to point each elsewhere.
WRITABLE_KEYS = {
    "results_root": "set results_root=/a/writable/folder (or $FACEBENCH_RESULTS)",
    "cache_dir": "set cache_dir=/a/writable/folder (or $FACEBENCH_CACHE)",
}


def check_writable(cfg: DictConfig) -> None:
    """Refuse, before Hydra makes a run folder or anything is decoded, a results or cache folder
    that cannot be written (a read-only checkout, an unwritable home), naming the key to set."""
    import tempfile
    from pathlib import Path

    for key, fix in WRITABLE_KEYS.items():
        folder = Path(str(cfg[key])).expanduser()
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, f"{existing} is not a folder")
            with tempfile.TemporaryFile(dir=existing):  # creates nothing that stays
                pass
        except OSError as exc:
            raise ConfigError(f"{key}={folder} cannot be written ({exc.strerror or exc}): {fix}") from exc


def compose(overrides: Optional[list[str]] = None) -> DictConfig:
    """Compose the run config exactly as ``python -m facebench`` would (for tests and tools)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from facebench.registry import get_registry

    get_registry()
    register_core_configs()
    register_resolvers()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []), return_hydra_config=True)


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config without Hydra's own node, for records."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    return data
