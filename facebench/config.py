"""Core config schemas (trainer, features, run) and composition outside the CLI.

Component schemas come from plugins through the registry; the ones here belong to the core
because every method shares them. Composition for tests and tools goes through the same
Hydra config tree the CLI uses, so what a test composes is what a user runs.
"""
from __future__ import annotations

from dataclasses import dataclass
import uuid
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from facebench.errors import FacebenchError

CONFIG_MODULE = "facebench_conf"


def register_resolvers() -> None:
    """``${facebench.uid:}`` gives run directories a random suffix, so no two runs share one."""
    if not OmegaConf.has_resolver("facebench.uid"):
        OmegaConf.register_new_resolver("facebench.uid", lambda: uuid.uuid4().hex[:6], use_cache=True)


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
    verifier_holdout: share of each split's training people with 2+ images kept out of the
      network's training, seeded by ``seed``; the verifier (and its PCA) is then fitted on them
      alone. 0 (off) by default: network and verifier both see every training person. The DeepID2
      paper trains its ConvNets on CelebFaces+A and Joint Bayesian on the disjoint CelebFaces+B,
      so that the verifier learns how features vary for people the network never saw; on LFW the
      price is fewer people for each. Pair protocols with per-split training only
      (unrestricted_no_outside): with outside training data the verifier already sees unseen
      people.
    """

    steps: int = 300
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    pk_identities: int = 32
    pk_images: int = 4
    min_images_per_identity: int = 1
    flip_augment: bool = True
    shift_augment: int = 0
    grad_clip: Optional[float] = None
    checkpoint_every: int = 0
    resume: bool = False
    log_every: int = 50
    amp: bool = False
    max_seconds: Optional[float] = None
    verifier_holdout: float = 0.0


@dataclass
class FeaturesConfig:
    """Test-time feature extraction.

    flip: none | sum | concat — how the features of an image and its mirror combine
      (DeepID papers concatenate; insightface sums).
    batch_size: images per forward pass.
    """

    flip: str = "concat"
    batch_size: int = 512


def register_core_configs() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="trainer", name="default", node=TrainerConfig, provider="facebench")
    cs.store(group="features", name="default", node=FeaturesConfig, provider="facebench")


class ConfigError(FacebenchError, ValueError):
    """A config value that cannot work; the message names the key and the fix."""


def reject_code_targets(cfg: Any) -> None:
    """Refuse ``_target_`` anywhere: components are built only from the registry, by name."""
    node = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
    stack: list[tuple[str, Any]] = [("", node)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, sub in value.items():
                where = f"{path}.{key}" if path else str(key)
                if key in ("_target_", "_partial_", "_args_"):
                    raise ConfigError(
                        f"config key '{where}' is not allowed: facebench never instantiates arbitrary code from a "
                        "config. Name a registered component instead (python -m facebench.plugins lists them)."
                    )
                if where != "hydra":
                    stack.append((where, sub))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", sub) for i, sub in enumerate(value))


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
